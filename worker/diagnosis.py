"""The diagnosis callback: feeds the loop's metric points into core/diagnosis's engine, runs
its rules at each check (an epoch's end, an evaluation) and keeps the report in the job
summary under "diagnosis" (the metric sink writes it with its next flush), marked final when
the run ends, whatever the outcome. When the smoothed training loss diverges it stops the
job: it raises TrainingDiverged from on_points, after the metric sink (earlier in the list)
has taken the points that show it, so the job keeps its curves up to that step."""

from __future__ import annotations

from collections.abc import Callable

from core.diagnosis import Diagnosis, RunFacts, diverged_message
from worker.callbacks import Summary, unwritable
from worker.state import LoopState, Point
from worker.train import Preempted, TrainingDiverged

CHECKED_BY = ("train_loss", "val_loss")  # an epoch's end or an evaluation: a check
_SEVERITY = {"error": 0, "warning": 1, "info": 2}


class DiagnosisCallback:
    def __init__(self, facts: RunFacts, summary: Summary,
                 flush: Callable[[], None] = lambda: None,
                 cancelled: Callable[[], bool] = lambda: False) -> None:
        self.engine = Diagnosis(facts)
        # What the preflight found before the first step (summary.preflight, this attempt's or
        # carried over from the first): shown with the run's own findings, at step 0.
        preflight = summary.report("preflight") or {}
        self.before_training = [f for f in preflight.get("findings", [])
                                if isinstance(f, dict) and "name" in f]
        self.facts = facts
        self.summary = summary
        self.flush = flush  # writes the summary (the metric sink's flush_all)
        self.cancelled = cancelled
        self.unchecked = False  # points arrived since the last check

    def replay(self, history: list[tuple[str, int, float, int]]) -> None:
        """A resumed attempt: the points an earlier attempt stored up to the checkpoint
        ((name, step, value, epoch) in step order), checked at the steps they were checked
        at, so that the rules see the whole run."""
        checked_at = None
        for name, step, value, _epoch in history:
            if checked_at is not None and step != checked_at:
                self.engine.check(checked_at)
                checked_at = None
            self.engine.add(name, step, value)
            if name in CHECKED_BY:
                checked_at = step
        if checked_at is not None:
            self.engine.check(checked_at)
        self._report(final=False)

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        check = False
        self.unchecked = True
        for point in points:
            diverged = self.engine.add(point.name, point.step, point.value)
            if diverged is not None:
                self._report(final=False)
                raise TrainingDiverged(
                    diverged_message(self.facts, point.step, self.engine.watch.reason),
                    step=point.step, reason=self.engine.watch.reason)
            check = check or point.name in CHECKED_BY
        if check:
            self.engine.check(state.step)
            self.unchecked = False
            self._report(final=False)

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self._report(final=True)  # the metric sink's on_exit writes it

    def on_preempt(self, state: LoopState) -> None:
        pass

    def on_exit(self, state: LoopState, error: BaseException | None) -> None:
        if error is None or unwritable(error):
            return
        if isinstance(error, TrainingDiverged) and error.step is not None:
            self.engine.diverge(error.step, error.reason)
        if self.unchecked:  # what the points since the last check show (an initial loss)
            self.engine.check(state.step)
        # A preemption resumes later: its diagnosis is not final. A cancel ends the job.
        self._report(final=not isinstance(error, Preempted) or self.cancelled())
        self.flush()

    def _report(self, final: bool) -> None:
        report = self.engine.report(final=final)
        # The run's own finding of a name comes first: it rests on the whole run.
        named = {f["name"] for f in report["findings"]}
        found = report["findings"] + [f for f in self.before_training if f["name"] not in named]
        report["findings"] = sorted(found, key=lambda f: (_SEVERITY.get(f.get("severity"), 3),
                                                          f.get("since_step", 0)))
        self.summary.add_report("diagnosis", report)
