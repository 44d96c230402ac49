"""The training child: `python -m worker.child JOB_ID ATTEMPT`.

A fresh interpreter per attempt keeps CUDA state and leaked memory out of the worker. Its
exit code tells the supervisor what happened (worker/exit_codes.py); on a training error it
also records a message for the user in the job's `error`.
"""

from __future__ import annotations

from worker.began import IMPORTS_BEGAN  # first: it times the imports below

# isort: split
import importlib
import logging
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from core.checkpoint_files import job_checkpoint_folder, remove_unrecorded
from core.db import Database, retry_database
from core.diagnosis import facts_from_spec
from core.jobspec import JobSpec
from core.memory_estimate import estimate as estimate_memory
from core.progress import Progress
from core.repo import checkpoints as checkpoint_repo
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.settings import Settings, get_settings
from models.build import build_model
from models.losses import build_loss
from worker.callbacks import CheckpointSink, DatabaseGone, LeaseLost, MetricSink, Summary
from worker.checkpoints import load_checkpoint, restore_loop_state, sha256_of
from worker.child_logs import end_attempt_logging, log_attempt, start_logging
from worker.data import prepare_data
from worker.diagnosis import DiagnosisCallback
from worker.disk_full import DiskFull
from worker.evaluation_report import evaluation_report
from worker.exit_codes import (
    EXIT_CRASH,
    EXIT_DATABASE_GONE,
    EXIT_DISK_FULL,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_PRUNED,
    EXIT_TRAINING_ERROR,
)
from worker.lr_find import find_learning_rate
from worker.optim import build_optimizer
from worker.preflight import PreflightFailed, failure_message, run_preflight
from worker.pruning import TrialPruned, trial_pruning
from worker.startup import Startup, after_first_step, queue_seconds, store_startup
from worker.train import (
    LoopState,
    Preempted,
    TrainingDiverged,
    build_run_scheduler,
    plan_run,
    train,
)

log = logging.getLogger("traindock.child")


class NoCuda(RuntimeError):
    pass


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise NoCuda(
            "resources.device is 'cuda' but this worker has no CUDA device; use 'auto' or "
            "'cpu', or run a worker on a GPU machine"
        )
    if wanted in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def tune_backends(device: torch.device) -> None:
    """On a GPU, let cuDNN time its convolution algorithms on the first batch of each shape
    and keep the fastest (cudnn.benchmark). A job's shapes are fixed (one batch size, a
    smaller last batch, the evaluation batches), so the timing is paid a few times, then
    never again. The algorithm chosen may differ from run to run, and with it the rounding
    of the results. The CPU has no such choice to make."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


class StopFlag:
    """Set by SIGTERM, or by SIGINT (a Ctrl-C in the terminal of a worker reaches its whole
    process group, this process included): the loop checkpoints at the next step and the
    child exits. SIGUSR1 is the supervisor's cancel: the loop stops the same way, its points
    and progress are flushed, but no checkpoint is written for a job that ends."""

    def __init__(self) -> None:
        self.requested = False
        self.cancelled = False
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True
        if signum == signal.SIGUSR1:
            self.cancelled = True

    def __call__(self) -> bool:
        return self.requested


def seconds_since_start() -> float:
    """How long ago this process was started (its interpreter's start-up included)."""
    return time.time() - psutil.Process().create_time()


def training_threads(setting: int) -> int:
    """torch's intra-op threads: the setting, else OMP_NUM_THREADS, else all cores but one.
    torch's own default is every core, and its threads wait for each other at every
    operation: on a machine the job shares, each time another process takes a core the
    whole step waits (docs/benchmarks.md, "Figures behind design choices")."""
    if setting:
        return setting
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, len(os.sched_getaffinity(0)) - 1)


def run(job_id: uuid.UUID, attempt: int, handed_at: float | None = None,
        db: Database | None = None) -> int:
    """Train one attempt. `handed_at`: when a warm child was handed the job (None: a cold
    child, started for it); `db`: the process's database handle, connected ahead by a warm
    child. Everything below writes through it."""
    phases = (Startup.cold(attempt, IMPORTS_BEGAN) if handed_at is None
              else Startup.warm_child(attempt, handed_at))
    stop = StopFlag()
    settings = get_settings()
    torch.set_num_threads(training_threads(settings.cpu_threads))
    db = db or Database.connect(settings, pool_size=2)

    def read_job():
        with db.read() as session:
            return job_repo.get_job(session, job_id)

    job = retry_database(read_job, "reading the job", settings.db_retry_s)
    phases.mark("job")
    if job is None or job.attempt != attempt or job.state != "running":
        return EXIT_LEASE_LOST
    phases.queue_s = queue_seconds(job)
    try:
        spec = JobSpec.model_validate(job.spec)
        device = pick_device(spec.resources.device)
        tune_backends(device)
        torch.manual_seed(spec.training.seed)
        data = prepare_data(spec, device, settings.dataset_dir, settings.device_data_mb)
        phases.mark("data")
        # Shapes on the CPU: the meta device's first pass would import 2 s of torch here.
        model, summary = build_model(spec.model, data.input_shape, shape_device="cpu")
        model.to(device)
        phases.mark("model")
        optimizer = build_optimizer(spec, model)
        # Built before the optimizer is restored: building sets the optimizer's rates.
        plan = plan_run(len(data.x_train), spec.training)
        scheduler = build_run_scheduler(spec, optimizer, plan)
        phases.mark("optimizer")  # torch imports its compiler on the first optimizer: ~2 s
        start = _resume_point(db, settings, job, model, optimizer, scheduler, device)
        metric_sink = MetricSink(db, job_id, attempt, settings.metric_flush_s,
                                 settings.db_retry_s, start.progress, start.summary)
        phases.mark("resume")
        try:
            _preflight(spec, job, start.state is not None, model, data, device, metric_sink)
        except PreflightFailed:
            # The job ends before training: its diagnosis is the preflight's findings.
            preflight = metric_sink.summary.report("preflight") or {}
            metric_sink.summary.add_report("diagnosis", {
                "final": True, "step": 0, "findings": preflight.get("findings", [])})
            metric_sink.flush_all()
            raise
        phases.mark("preflight")
        diagnosis = DiagnosisCallback(
            facts_from_spec(spec, task=data.task, num_classes=data.num_classes,
                            total_steps=plan.total_steps),
            metric_sink.summary, flush=metric_sink.flush_all, cancelled=lambda: stop.cancelled)
        diagnosis.replay(start.history)
        callbacks = [
            metric_sink,
            CheckpointSink(
                db, settings.checkpoint_dir, job_id, attempt, job.spec, data.normalization,
                spec.training.checkpoint_every_epochs, settings.keep_checkpoints, metric_sink,
                resumed_from=start.checkpoint_id, cancelled=lambda: stop.cancelled,
            ),
            diagnosis,  # after the metric sink: a divergence it stops on is in the points stored
        ]
        pruning = retry_database(
            lambda: trial_pruning(db, job, metric_sink.summary, metric_sink.flush_all),
            "reading the sweep's pruner", settings.db_retry_s)
        if pruning is not None:
            callbacks.append(pruning)  # last: every other callback has the points it stops on
        phases.log_ready()
        after_first_step(phases, optimizer,
                         lambda breakdown: store_startup(db, job_id, attempt, breakdown))
        started = time.monotonic()
        if spec.mode == "lr_find":
            _find_learning_rate(spec, model, optimizer, data, metric_sink, stop)
            log.info("range test done in %.2f s", time.monotonic() - started)
            return EXIT_OK
        eval_batch = estimate_memory(summary, spec.training.batch_size).eval_batch
        train(spec, model, optimizer, build_loss(spec.loss), data, callbacks, scheduler=scheduler,
              resume=start.state, should_stop=stop, eval_batch=eval_batch)
        log.info("trained in %.2f s", time.monotonic() - started)
        _store_evaluation(db, settings, job_id, attempt, model, data, eval_batch)
        return EXIT_OK
    except Preempted:
        log.info("stopped on cancel, without a checkpoint" if stop.cancelled
                 else "checkpointed and stopped on request")
        return EXIT_PREEMPTED
    except LeaseLost as exc:
        log.warning("%s", exc)
        return EXIT_LEASE_LOST
    except TrialPruned as exc:
        log.info("stopped by the sweep's pruner")
        _record(db, job_id, attempt, str(exc))
        return EXIT_PRUNED
    except (DatabaseGone, OperationalError, InterfaceError) as exc:
        log.error("giving up on the database: %s", str(exc).splitlines()[0])
        return EXIT_DATABASE_GONE
    except DiskFull as exc:
        log.error("%s", exc)
        _record(db, job_id, attempt, str(exc))
        return EXIT_DISK_FULL
    except (TrainingDiverged, NoCuda, GradientCheckFailed, PreflightFailed) as exc:
        _record(db, job_id, attempt, str(exc))
        return EXIT_TRAINING_ERROR
    except Exception as exc:
        log.exception("training crashed")
        tail = "".join(traceback.format_exception_only(exc)).strip()
        _record(db, job_id, attempt, f"training crashed: {tail}")
        return EXIT_CRASH


@dataclass(frozen=True)
class StartPoint:
    """Where an attempt starts: the loop state restored from a checkpoint (None: from the
    first step), the summary and progress as they stood there, and the checkpoint's row."""

    state: LoopState | None
    summary: Summary
    progress: Progress
    checkpoint_id: int | None
    history: list[tuple[str, int, float, int]]  # the points kept, for the diagnosis


def _resume_point(db: Database, settings, job, model, optimizer, scheduler, device
                  ) -> StartPoint:
    """Restore the newest intact checkpoint, if any, and drop the metric points an earlier
    attempt logged after it; without one, start over and drop them all. A checkpoint whose
    file is missing or damaged is skipped (the log says which and why) and its row deleted
    with its file, so that no attempt tries it again and retention does not rank it above
    the checkpoints this attempt writes. Files no row names (a write killed midway) are
    removed first. The job's progress goes back to the same step in the same transaction,
    so readers never see points missing below the progress they are shown."""
    job_id = job.id

    def recorded():
        with db.read() as session:
            return checkpoint_repo.list_checkpoints(session, job_id)

    rows = retry_database(recorded, "finding the checkpoint", settings.db_retry_s)
    remove_unrecorded(job_checkpoint_folder(settings.checkpoint_dir, job_id),
                      [row.path for row in rows])
    resume, step, resumed_from, skipped = None, -1, None, []
    for row in reversed(rows):  # newest first
        payload, why = _intact_checkpoint(Path(row.path), row.sha256)
        if payload is None:
            log.warning("checkpoint %s (step %d) is %s: skipped", row.path, row.step, why)
            skipped.append(row)
            continue
        resume = restore_loop_state(payload, model, optimizer, device, scheduler)
        step, resumed_from = resume.step, row.id
        log.info("resuming from %s (step %d)", row.path, step)
        break
    if skipped and resume is None:
        log.warning("no intact checkpoint among %d: starting over", len(skipped))

    progress = Progress.from_dict(job.progress).rewound(step=max(step, 0),
                                                         epoch=resume.epoch if resume else 0)

    def trim():
        with db.transaction() as session:
            checkpoint_repo.delete_checkpoints(session, job_id, [row.id for row in skipped])
            metric_repo.delete_points_after(session, job_id, step)
            job_repo.record_progress(session, job_id, job.attempt, progress)
            return metric_repo.points_up_to(session, job_id, step)

    history = retry_database(trim, "trimming metrics", settings.db_retry_s)
    for row in skipped:
        Path(row.path).unlink(missing_ok=True)
    return StartPoint(resume, Summary.rebuilt(history), progress, resumed_from, history)


def _intact_checkpoint(path: Path, sha256: str) -> tuple[dict | None, str]:
    """(the checkpoint's contents, "") when the file is there, matches its recorded sha256 and
    loads; else (None, why not)."""
    if not path.is_file():
        return None, "missing"
    if sha256_of(path) != sha256:
        return None, "damaged (its sha256 differs from the one recorded)"
    try:
        return load_checkpoint(path), ""
    except Exception as exc:  # a file that hashes right but torch cannot read
        return None, f"unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"


class GradientCheckFailed(RuntimeError):
    """The `"gradcheck": true` preflight found autograd disagreeing with numerical gradients."""


def _preflight(spec: JobSpec, job, resumed: bool, model: torch.nn.Module, data,
               device: torch.device, metric_sink: MetricSink) -> None:
    """Run the preflight (worker/preflight.py) before the first step and keep its report in
    summary.preflight, and with `"gradcheck": true` the gradient check's in
    summary.gradcheck; written at once, so that a job that fails shows them. A resumed
    attempt carries the first attempt's reports over instead of checking again: its network
    is no longer the initial one."""
    if spec.range_test is not None:
        return  # a range test trains at rates up to a blow-up by design: nothing to check first
    if resumed:
        for key in ("preflight", "gradcheck"):
            if key in (job.summary or {}):
                metric_sink.summary.add_report(key, job.summary[key])
        return
    preflight = run_preflight(spec, model, build_loss(spec.loss), data, device)
    if preflight.report is None and preflight.gradcheck is None:
        return
    if preflight.report is not None:
        metric_sink.summary.add_report("preflight", preflight.report)
        log.info("preflight %s in %.2f s: %s", preflight.report["verdict"],
                 preflight.report["seconds"],
                 ", ".join(f"{c['name']} {c['verdict']}" for c in preflight.report["checks"]))
    report = preflight.gradcheck
    if spec.gradcheck and report is not None:
        metric_sink.summary.add_report("gradcheck", report.as_dict())
    metric_sink.flush_all()
    worst = report.worst() if spec.gradcheck and report is not None else None
    if worst is not None and report.verdict == "wrong":
        raise GradientCheckFailed(
            f"gradient check failed: {worst.name} {list(worst.shape)} has relative error "
            f"{worst.relative_error:.2e} between autograd and numerical gradients (above 1e-3); "
            "see summary.gradcheck, or set gradcheck to false to train anyway"
        )
    failed = preflight.failed_check()
    if failed is not None and spec.preflight.stop_on_fail:
        raise PreflightFailed(failure_message(failed))


def _find_learning_rate(spec: JobSpec, model: torch.nn.Module, optimizer, data,
                        metric_sink: MetricSink, stop: StopFlag) -> None:
    """`mode: "lr_find"`: the range test instead of training (worker/lr_find.py). Only the
    metric sink listens: the test writes no checkpoint (its weights, trained at rates up to
    the blow-up, are of no use), so a preempted attempt starts it over. Its report is stored
    in summary.lr_find with the last points."""
    report = find_learning_rate(spec, model, optimizer, build_loss(spec.loss), data,
                                [metric_sink], should_stop=stop)
    metric_sink.summary.add_report("lr_find", report.as_dict())
    metric_sink.flush_all()


def _store_evaluation(db: Database, settings: Settings, job_id: uuid.UUID, attempt: int,
                      model: torch.nn.Module, data, eval_batch: int | None) -> None:
    """The test split's confusion matrix and per-class metrics (or predicted against true
    values), from the weights the run ended with (the best ones, restored by early
    stopping), stored in job.evaluation before the job is marked finished."""
    if data.x_test is None:
        return
    started = time.monotonic()
    try:
        report = evaluation_report(model, data.x_test, data.y_test, data.task,
                                   data.class_names, data.num_classes, eval_batch)
    except Exception:  # the training succeeded: a report that fails must not fail the job
        log.exception("the test evaluation failed; job.evaluation stays empty")
        return

    def store():
        with db.transaction() as session:
            return job_repo.record_evaluation(session, job_id, attempt, report)

    if not retry_database(store, "storing the evaluation", settings.db_retry_s):
        raise LeaseLost(f"attempt {attempt} no longer owns job {job_id}")
    log.info("test evaluation stored in %.2f s", time.monotonic() - started)


def _record(db: Database, job_id: uuid.UUID, attempt: int, message: str) -> None:
    try:
        with db.transaction() as session:
            job_repo.record_error(session, job_id, attempt, message)
    except Exception:  # the supervisor still records the exit code
        log.exception("could not record the error")


def _warm_up(settings: Settings) -> Database:
    """What every job pays on its first use, paid before it arrives: torch imports its
    compiler on the first optimizer it builds, and more on the first backward pass and step;
    the built-in datasets import scikit-learn's loaders (seconds on a busy machine); the first
    query opens a connection. The handle returned keeps that connection in its pool
    (pool_pre_ping replaces it if it died while the child waited)."""
    torch.set_num_threads(training_threads(settings.cpu_threads))  # as run() will
    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(layer.parameters())
    torch.nn.functional.cross_entropy(layer(torch.zeros(3, 4)),
                                      torch.zeros(3, dtype=torch.long)).backward()
    optimizer.step()
    importlib.import_module("sklearn.datasets")
    db = Database.connect(settings, pool_size=2)
    try:
        db.ping()
    except SQLAlchemyError as exc:  # the job's own reads will retry; no reason to die here
        log.warning("warm-up could not reach the database: %s", str(exc).splitlines()[0])
    return db


def wait_for_job(db: Database) -> tuple[uuid.UUID, int, float] | None:
    """A warm child (worker/spawn.py): read "JOB_ID ATTEMPT HANDED_AT LOG_PATH" from stdin
    and send this process's output to the attempt's log from then on. HANDED_AT is the
    worker's time.time() when it wrote the line: the job's start-up counts from it. None: the
    worker went away (stdin closed) without handing one over."""
    log.info("warm training process %d ready for a job, %.1f s after it started", os.getpid(),
             seconds_since_start())
    line = sys.stdin.readline().rstrip("\n").split(" ", 3)
    if len(line) != 4:
        return None
    job_id, attempt, handed_at = uuid.UUID(line[0]), int(line[1]), float(line[2])
    log_path = Path(line[3])
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return job_id, attempt, handed_at


# Exit codes after which the process may train another job: the job ended as jobs end. After
# a crash, a lost database, a full disk, a preemption or a cancel it exits, as one that is
# stopping or whose state is in doubt should.
REUSABLE_AFTER = (EXIT_OK, EXIT_TRAINING_ERROR)


def serve_jobs(results_fd: int | None) -> int:
    """A warm child's life: warm up, then train the jobs handed over on stdin. With a results
    pipe (TRAINDOCK_WARM_CHILD_JOBS above 1), after a job that ended normally on the CPU it
    writes "done CODE" there, puts its output back in the warm log and its signals back to
    their defaults, and waits for the next one; otherwise it returns the job's exit code (the
    worker decides how many jobs it trains, and kills it when it has trained enough)."""
    waited = time.monotonic()
    db = _warm_up(get_settings())
    warm_log = os.dup(1)
    while True:
        handed = wait_for_job(db)
        if handed is None:
            return EXIT_LEASE_LOST  # the worker went away without handing one over
        job_id, attempt, handed_at = handed
        log_attempt(job_id, attempt)
        log.info("warm training process %d took the job after %.1f s", os.getpid(),
                 time.monotonic() - waited)
        code = run(job_id, attempt, handed_at, db)
        if results_fd is None or code not in REUSABLE_AFTER or torch.cuda.is_initialized():
            return code  # a GPU's memory goes back with the process
        end_attempt_logging()
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(warm_log, 1)
        os.dup2(warm_log, 2)
        os.write(results_fd, f"done {code}\n".encode())
        waited = time.monotonic()


def main(argv: list[str]) -> int:
    start_logging()
    if argv[:1] == ["--wait"]:
        results_fd = int(argv[2]) if argv[1:2] == ["--results-fd"] else None
        return serve_jobs(results_fd)
    job_id, attempt = uuid.UUID(argv[0]), int(argv[1])
    log_attempt(job_id, attempt)
    return run(job_id, attempt)


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown. Everything the job wrote is
    committed or on disk by now, and the teardown of an interpreter with torch loaded takes
    most of a second (0.85 s on 2 cores), which the job's end would wait for. The database
    connections close with the process, outside any transaction."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
