"""What pydantic alone cannot check: the JobSpec's sections against each other, against the
dataset and the built network, and against the server's limits. Each check raises SpecError
naming the field to change; `warnings` lists what is allowed but probably not meant.
"""

from __future__ import annotations

from core import datasets, memory_estimate
from core.settings import Settings
from core.specs.job import JobSpec
from core.specs.loss import LOSS_TASKS, losses_for
from core.specs.schedule import VAL_METRICS
from core.validated_job import ValidatedJob
from core.webhooks.address import RefusedDestination, resolve
from models.build import ModelSummary, SpecError, Where
from models.spec import count_layers


def limits(spec: JobSpec, settings: Settings) -> None:
    if spec.training.epochs > settings.max_epochs:
        raise SpecError("training.epochs", f"at most {settings.max_epochs} on this server")
    if spec.training.batch_size > settings.max_batch_size:
        raise SpecError("training.batch_size", f"at most {settings.max_batch_size} on this server")
    count, _ = count_layers(spec.model.layers)
    if count > settings.max_layers:
        raise SpecError(
            "model.layers",
            f"the model has {count} layers counting those inside residual blocks; at most "
            f"{settings.max_layers} on this server",
        )


def output(spec: JobSpec, info: datasets.DatasetInfo, summary: ModelSummary) -> None:
    """The loss against the dataset's task, the network's output against the targets, and
    the loss's and metrics' per-class or per-output settings against both."""
    last = len(spec.model.layers) - 1
    where = Where(f"model.layers[{last}]", spec.model.layers[last].type)
    out = summary.output_shape
    loss = spec.loss
    if info.task not in LOSS_TASKS[loss.type]:
        needs = " or ".join(LOSS_TASKS[loss.type])
        raise SpecError(
            "loss.type",
            f"{loss.type} needs a {needs} dataset; {info.name} is {info.task}: "
            f"use {_either(losses_for(info.task, info.num_classes))}",
        )
    binary = loss.type == "bce_with_logits" and info.task == "classification"
    if binary and info.num_classes != 2:
        tunable = datasets.BUILTINS[info.name].tunable if info.builtin else frozenset()
        more = ", or set dataset.classes to 2" if "classes" in tunable else ""
        raise SpecError(
            "loss.type",
            f"bce_with_logits on class labels is binary, but {info.name} has "
            f"{info.num_classes} classes: use cross_entropy{more}",
        )
    if binary:
        wanted = (1,)
        what = f"{info.name} is binary: bce_with_logits needs 1 output, the logit of class 1"
    elif info.task == "classification":
        wanted, what = (info.num_classes,), f"{info.name} has {info.num_classes} classes"
    else:
        noun = "labels" if info.task == "multilabel" else "targets"
        wanted, what = info.target_shape, f"{info.name}'s {noun} are {info.target_shape}"
    if out != wanted:
        fix = f"end with a linear layer with out_features {wanted[0]}"
        if len(out) != 1:
            fix = f"add a flatten layer and a linear layer with out_features {wanted[0]}"
        raise SpecError(where, f"the network's output is {out} but {what}; {fix}")
    weights = getattr(loss, "weight", None)
    if weights is not None and len(weights) != info.num_classes:
        raise SpecError(
            "loss.weight",
            f"{len(weights)} weights for {info.num_classes} classes: give one weight per "
            f"class of {info.name}, {info.num_classes} in all",
        )
    pos_weight = getattr(loss, "pos_weight", None)
    if isinstance(pos_weight, list) and len(pos_weight) != wanted[0]:
        given = "1 weight" if len(pos_weight) == 1 else f"{len(pos_weight)} weights"
        outputs = "1 output" if wanted[0] == 1 else f"{wanted[0]} outputs"
        raise SpecError(
            "loss.pos_weight",
            f"{given} for {outputs}: give one per output ({wanted[0]} in all), or a single "
            "number for every output",
        )
    top_k = spec.metrics.top_k
    if top_k is not None and (loss.type != "cross_entropy" or top_k >= info.num_classes):
        if loss.type != "cross_entropy":
            why = (f"top-k accuracy ranks the classes of a cross_entropy job; this one uses "
                   f"{loss.type}: remove metrics.top_k")
        else:
            largest = info.num_classes - 1
            fix = f"use a top_k of at most {largest}, or remove it" if largest >= 2 else "remove it"
            why = (f"{info.name} has {info.num_classes} classes, so top-{top_k} accuracy would "
                   f"always be 1: {fix}")
        raise SpecError("metrics.top_k", why)


def subsample(checked: ValidatedJob) -> None:
    """dataset.n_train can only take samples the training split has."""
    wanted, split = checked.spec.dataset.n_train, checked.split_size
    if wanted is None or wanted <= split:
        return
    info = checked.dataset
    held = ("its own validation split is held out" if info.val_samples
            else f"dataset.val_fraction {checked.spec.dataset.val_fraction:g} is held out for "
            "validation")
    raise SpecError(
        "dataset.n_train",
        f"{wanted:,} samples asked for, but the training split of {info.name} holds "
        f"{split:,} (after its test split and {held}): use a dataset.n_train of at most "
        f"{split:,}, or remove it to train on the whole split",
    )


def schedule(checked: ValidatedJob) -> None:
    """What the schedule needs from the rest of the spec: a run long enough, a validation
    split and a metric the task records."""
    spec, schedule = checked.spec, checked.spec.schedule
    if schedule.type == "warmup":
        epochs = spec.training.epochs
        run = epochs if schedule.unit == "epoch" else checked.plan.total_steps
        if schedule.warmup_length > run:
            raise SpecError(
                "schedule.warmup_length",
                f"a warm-up of {schedule.warmup_length} {schedule.unit}s is longer than the run "
                f"({run} {schedule.unit}s); shorten it or train for longer",
            )
    if schedule.type == "reduce_on_plateau":
        _watched(checked, "schedule.monitor", schedule.monitor, "reduce_on_plateau",
                 "use another schedule")


def _watched(checked: ValidatedJob, where: str, monitor: str, what: str, instead: str) -> None:
    """A validation metric is watched (`where`: the field; its `.monitor` when that is not
    the field itself): the job needs a validation split and a metric its task records."""
    if not checked.has_validation:
        raise SpecError(
            where,
            f"{what} watches a validation metric but dataset.val_fraction is 0; set "
            f"dataset.val_fraction above 0 or {instead}",
        )
    _monitor(checked, where if where.endswith(".monitor") else f"{where}.monitor", monitor)


def _monitor(checked: ValidatedJob, where: str, monitor: str) -> None:
    known = VAL_METRICS[checked.dataset.task]
    if monitor not in known:
        raise SpecError(
            where, f"{checked.dataset.name} records no {monitor!r}; use {_either(known)}"
        )


def _training_warnings(checked: ValidatedJob) -> list[str]:
    """Options that are allowed but do less than their values suggest."""
    cfg, notes, plan = checked.spec.training, [], checked.plan
    batches, full_run = plan.batches, plan.full_steps
    if cfg.max_steps is not None and cfg.max_steps > full_run:
        notes.append(
            f"training.max_steps {cfg.max_steps} is more than {cfg.epochs} epochs take "
            f"({full_run} steps): the run ends after the epochs; raise training.epochs"
        )
    if cfg.accumulate_batches > batches:
        notes.append(
            f"training.accumulate_batches {cfg.accumulate_batches} exceeds the batches in an "
            f"epoch ({batches}): each epoch is a single step"
        )
    if cfg.eval_every_steps is None and cfg.eval_every_epochs > cfg.epochs:
        notes.append(
            f"training.eval_every_epochs {cfg.eval_every_epochs} exceeds training.epochs: "
            "validation runs only after the last epoch"
        )
    return notes


def training(checked: ValidatedJob) -> None:
    """Early stopping needs a validation split and a metric the task records."""
    stopping = checked.spec.training.early_stopping
    if stopping is not None:
        _watched(checked, "training.early_stopping", stopping.monitor, "early stopping",
                 "remove early_stopping")


# Which inputs each shape-bound augmentation fits, by rank: (C, L) signals, (C, H, W) images.
_AUGMENT_RANKS = {
    "random_shift": ((2, 3), "signals (C, L) or images (C, H, W)"),
    "random_crop": ((3,), "images (C, H, W)"),
    "horizontal_flip": ((3,), "images (C, H, W)"),
}


def augment(checked: ValidatedJob) -> None:
    """Each augmentation against the dataset's input shape, and mixup against the targets."""
    spec, info = checked.spec, checked.dataset
    shape = info.input_shape
    for i, aug in enumerate(spec.dataset.augment):
        where = Where(f"dataset.augment[{i}]", aug.type)
        if aug.type in _AUGMENT_RANKS:
            ranks, needs = _AUGMENT_RANKS[aug.type]
            if len(shape) not in ranks:
                raise SpecError(
                    where,
                    f"needs {needs}; the inputs of {info.name} are {shape}: remove it, or use "
                    f"gaussian_noise or mixup, which fit any input",
                )
        if aug.type in ("random_shift", "random_crop"):
            # A move as large as the input would blank whole samples.
            name, amount = ("max_shift", aug.max_shift) if aug.type == "random_shift" else (
                "padding", aug.padding)
            smallest = min(shape[1:])
            if amount >= smallest:
                raise SpecError(
                    where,
                    f"{name} {amount} can blank whole samples of {info.name}, whose inputs are "
                    f"{shape}; use a {name} of at most {smallest - 1}",
                )
        if aug.type == "mixup" and info.target_shape == ():  # class labels; float targets mix
            if spec.loss.type != "cross_entropy":
                raise SpecError(
                    where,
                    f"mixup turns the class labels of {info.name} into soft targets, which only "
                    f"cross_entropy takes, but loss.type is {spec.loss.type}: use "
                    f"cross_entropy or remove mixup",
                )
            if spec.loss.weight is not None:
                # With soft targets torch averages the weighted losses over the samples, not
                # over their weights as it does for labels: the loss would change meaning.
                raise SpecError(
                    where,
                    "mixup cannot be combined with loss.weight (class weights): remove one",
                )


def _either(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def warnings(checked: ValidatedJob) -> list[str]:
    spec, n_train = checked.spec, checked.n_train
    notes = []
    if spec.training.batch_size > n_train:
        notes.append(
            f"training.batch_size {spec.training.batch_size} exceeds the training split "
            f"({n_train} samples): each epoch is a single step"
        )
    if not checked.has_validation:
        notes.append("dataset.val_fraction is 0: no validation metrics will be recorded")
    own_val = checked.dataset.val_samples
    default_fraction = type(spec.dataset).model_fields["val_fraction"].default
    if own_val and spec.dataset.val_fraction != default_fraction:
        notes.append(
            f"dataset.val_fraction {spec.dataset.val_fraction:g} does not apply: "
            f"{checked.dataset.name} has its own validation split ({own_val} samples), which "
            "is used instead; remove dataset.val_fraction"
        )
    doubled = _doubled_output_activation(spec)
    if doubled:
        notes.append(doubled)
    return notes + _training_warnings(checked)


# Losses that take logits and squash them themselves, with the squashing layer that must not
# end the network before them and what the loss applies instead.
_LOGIT_LOSSES = {
    "cross_entropy": ("softmax", "log-softmax"),
    "bce_with_logits": ("sigmoid", "a log-sigmoid"),
}
# Layers that leave the values as they are (dropout scales them, still after the squashing).
_PASS_THROUGH = ("identity", "dropout", "flatten", "reshape")


def _doubled_output_activation(spec: JobSpec) -> str | None:
    """A softmax ending the network before cross_entropy (or a sigmoid before bce_with_logits)
    is applied twice: the job still runs, but learns slowly from flattened gradients."""
    if spec.loss.type not in _LOGIT_LOSSES:
        return None
    squash, applied = _LOGIT_LOSSES[spec.loss.type]
    layers = spec.model.layers
    i = len(layers) - 1
    while i > 0 and layers[i].type in _PASS_THROUGH:
        i -= 1
    if layers[i].type != squash:
        return None
    return (
        f"model.layers[{i}] ({squash}): {spec.loss.type} takes logits and applies {applied} "
        f"itself, so the network's {squash} is applied twice and its gradients shrink; remove "
        f"this {squash} layer and end with the linear layer (predictions are unchanged)"
    )


def memory(checked: ValidatedJob, settings: Settings) -> None:
    """The activations of a training batch (core/memory_estimate.py) against the training
    process's memory limit: a spec that cannot fit is refused before it is queued."""
    limit_mb = settings.child_memory_limit_mb
    if not limit_mb:
        return
    batch = checked.spec.training.batch_size
    need = memory_estimate.estimate(checked.model, batch)
    limit = limit_mb * 2**20
    if need.train_bytes <= limit:
        return
    weights = checked.model.total_params * memory_estimate.BYTES_PER_VALUE
    per_sample = (need.train_bytes - weights) // batch
    fits = (limit - weights) // per_sample if per_sample and limit > weights else 0
    fix = (f"lower training.batch_size to at most {fits}" if fits >= 1
           else "a single sample does not fit")
    raise SpecError(
        "training.batch_size",
        f"{need.describe_train(checked.model, batch)}; a training process on this server may use "
        f"{limit_mb:,} MB (TRAINDOCK_MAX_CHILD_MEMORY_MB): {fix}, or make the largest "
        "activations smaller (fewer channels or features, less padding, more pooling)",
    )


def notify(spec: JobSpec, settings: Settings) -> None:
    """A webhook's URL must resolve to an address this server sends to (core/webhooks)."""
    if spec.notify is None:
        return
    try:
        resolve(spec.notify.url, settings.webhook_allow_private)
    except RefusedDestination as exc:
        raise SpecError("notify.url", str(exc)) from None
