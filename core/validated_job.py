"""A JobSpec checked against its dataset and the server (core/jobspec.py's validate_job):
the dataset it names, the network's summary, and what follows from them, the run's plan
included."""

from __future__ import annotations

from dataclasses import dataclass, field

from core import datasets
from core.named_warning import NamedWarning
from core.run_plan import RunPlan, plan_run
from core.specs.job import JobSpec
from models.build import ModelSummary


@dataclass
class ValidatedJob:
    spec: JobSpec
    dataset: datasets.DatasetInfo
    model: ModelSummary
    warnings: list[str] = field(default_factory=list)  # every warning's message
    named_warnings: list[NamedWarning] = field(default_factory=list)  # those with a name

    @property
    def split_size(self) -> int:
        """The training split's expected size before dataset.n_train subsamples it."""
        info = self.dataset
        pool = info.n_samples - (info.val_samples or 0) - info.n_test
        if info.val_samples is not None:  # the dataset's own validation split
            return pool
        return int(pool * (1 - self.spec.dataset.val_fraction))

    @property
    def n_train(self) -> int:
        """The samples the job trains on: dataset.n_train of the split, or all of it."""
        wanted = self.spec.dataset.n_train
        return self.split_size if wanted is None else min(wanted, self.split_size)

    @property
    def has_validation(self) -> bool:
        return bool(self.dataset.val_samples) or self.spec.dataset.val_fraction > 0

    @property
    def plan(self) -> RunPlan:
        """The run as the training loop will cut it, from the split's expected size."""
        return plan_run(self.n_train, self.spec.training)

    @property
    def estimated_steps(self) -> int:
        """Optimizer steps for the whole job: the loop's count, for the training split's
        expected size (a stratified split may round it by a sample per class); a range test
        (mode lr_find) takes lr_find.steps, one batch each, whatever the split's size."""
        if (test := self.spec.range_test) is not None:
            return test.steps
        return self.plan.total_steps

    def model_report(self) -> dict:
        return {**self.model.as_dict(), "warnings": self.warnings,
                "named_warnings": [w.as_dict() for w in self.named_warnings]}
