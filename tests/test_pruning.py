"""core/sweeps/prune.py on hand-made trial rows in a database of its own (no worker): the
answer `should_prune` gives from job rows and metric points is the one a live Optuna study
gives for the same reports in the same order, for each pruner; and the median pruner's answer
and message on a small history read as a user would expect."""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime

import optuna
import pytest
from optuna.trial import TrialState

from cli.sweeps import headline, trials_table
from cli.watch import summary_block
from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from core.sweeps import space
from core.sweeps.check import check_sweep
from core.sweeps.prune import build_pruner, should_prune
from core.sweeps.results import Trial, TrialJob, best_trial
from core.sweeps.spec import SweepSpec
from core.sweeps.study import _study, next_params
from core.tables import Job, Metric, MetricKey, Sweep
from tests.conftest import ROOT, create_database, drop_database, load_example
from traindock.results import Sweep as SweepResult

METRIC = "val_loss"


@pytest.fixture(scope="module")
def db():
    """One database for the module: each test makes sweeps of its own, and a sweep's pruner
    sees only its own jobs."""
    name = f"traindock_prune_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    upgrade(Settings(database_url=url).sqlalchemy_url)
    database = Database.connect(Settings(database_url=url), pool_size=2)
    with database.transaction() as session:
        session.add(MetricKey(name=METRIC))
    yield database
    database.engine.dispose()
    drop_database(name)


def _sweep(db: Database, pruner: dict) -> tuple[uuid.UUID, SweepSpec]:
    spec = SweepSpec.model_validate({
        "base": load_example("digits-mlp"), "method": "random", "budget": {"trials": 50},
        "parameters": {"optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True}},
        "objective": {"metric": METRIC, "at": "final"}, "pruner": pruner})
    with db.transaction() as session:
        sweep = Sweep(id=uuid.uuid4(), name="s", owner="o", trials=50,
                      spec=spec.model_dump(mode="json"))
        session.add(sweep)
    return sweep.id, spec


def _job(db: Database, sweep_id: uuid.UUID | None, number: int, state: str,
         reports: dict[int, float]) -> uuid.UUID:
    """A trial's job with its objective's points; a completed one's summary holds the last."""
    last = reports[max(reports)] if reports else None
    summary = {"latest": {METRIC: last}} if state == "succeeded" and last is not None else {}
    with db.transaction() as session:
        key_id = session.query(MetricKey.id).filter(MetricKey.name == METRIC).scalar()
        job = Job(id=uuid.uuid4(), name=f"t{number}", spec={}, state=state, summary=summary,
                  sweep_id=sweep_id, trial_number=number if sweep_id else None,
                  trial_repeat=0 if sweep_id else None, trial_params={})
        session.add(job)
        session.flush()
        session.add_all(Metric(job_id=job.id, key_id=key_id, step=step, value=value, epoch=1,
                               wall_time=datetime.now(UTC)) for step, value in reports.items())
    return job.id


def _ask(db: Database, job_id: uuid.UUID, step: int, value: float):
    with db.read() as session:
        return should_prune(session, session.get(Job, job_id), step, value)


def _curve(number: int, steps: list[int]) -> dict[int, float]:
    """A made-up validation loss: each trial its own level and rate, with a wobble."""
    level = 0.3 + ((number * 7) % 11) / 10
    return {s: level + 2.0 * math.exp(-s / (3 + number % 4)) + 0.05 * math.sin(s * number)
            for s in steps}


@pytest.mark.parametrize("pruner", [
    {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
    {"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    {"type": "successive_halving"},  # min_resource estimated from the first completed trial
    {"type": "hyperband", "min_resource": 1, "max_resource": 16, "reduction_factor": 2},
], ids=lambda p: "-".join(str(v) for v in p.values()))
def test_the_answer_is_a_live_optuna_study_s_for_the_same_reports(db, pruner):
    sweep_id, spec = _sweep(db, pruner)
    steps = list(range(1, 17))
    # The live study: trials one after another, each stopped where the pruner says.
    live = optuna.create_study(study_name=f"sweep-{sweep_id}", pruner=build_pruner(spec.pruner),
                               sampler=optuna.samplers.RandomSampler(seed=0))
    answers_live: list[list[bool]] = []
    for number in range(9):
        trial, said, reported = live.ask(), [], {}
        for step, value in _curve(number, steps).items():
            trial.report(value, step)
            reported[step] = value
            said.append(trial.should_prune())
            if said[-1]:
                break
        answers_live.append(said)
        if number < 8:  # the last one is the asking trial: it is still running
            state = "pruned" if said[-1] else "succeeded"
            if said[-1]:
                live.tell(trial, state=TrialState.PRUNED)
            else:
                live.tell(trial, reported[max(reported)])
            _job(db, sweep_id, number, state, reported)
    pruned = [n for n, said in enumerate(answers_live) if said[-1]]
    assert pruned, "the made-up curves should give the pruner something to prune"

    # The same last trial asked through the rows, one evaluation at a time.
    asking = _job(db, sweep_id, 8, "running", {})
    curve = _curve(8, steps)
    rows_said = []
    for step in steps[:len(answers_live[8])]:
        rows_said.append(_ask(db, asking, step, curve[step]) is not None)
        with db.transaction() as session:  # the point is stored, as the child's flush does
            key_id = session.query(MetricKey.id).filter(MetricKey.name == METRIC).scalar()
            session.add(Metric(job_id=asking, key_id=key_id, step=step, value=curve[step],
                               epoch=1, wall_time=datetime.now(UTC)))
    assert rows_said == answers_live[8]


def test_the_median_pruner_stops_a_worse_trial_and_says_why(db):
    sweep_id, _ = _sweep(db, {"type": "median", "n_startup_trials": 2})
    _job(db, sweep_id, 0, "succeeded", {2: 1.0, 4: 0.6, 6: 0.4})
    _job(db, sweep_id, 1, "succeeded", {2: 1.2, 4: 0.7, 6: 0.5})
    hopeless = _job(db, sweep_id, 2, "running", {2: 2.3})
    good = _job(db, sweep_id, 3, "running", {2: 0.9})

    pruned = _ask(db, hopeless, 4, 2.2)
    assert pruned is not None
    assert (pruned.step, pruned.metric, pruned.value, pruned.pruner) == (4, METRIC, 2.2, "median")
    assert pruned.reason == ("pruned at step 4: val_loss 2.2 was worse than the median 0.65 of "
                             "the 2 completed trial(s) at that step")
    assert _ask(db, good, 4, 0.5) is None
    # A point it stored past the step asked about is not its report there.
    assert _ask(db, good, 2, 0.9) is None


def test_no_pruner_no_sweep_and_too_few_completed_trials_prune_nothing(db):
    plain = _job(db, None, 0, "running", {2: 9.0})
    assert _ask(db, plain, 4, 9.0) is None
    sweep_id, _ = _sweep(db, {"type": "none"})
    _job(db, sweep_id, 0, "succeeded", {2: 0.1, 4: 0.1})
    assert _ask(db, _job(db, sweep_id, 1, "running", {2: 9.0}), 4, 9.0) is None
    sweep_id, _ = _sweep(db, {"type": "median", "n_startup_trials": 3})
    _job(db, sweep_id, 0, "succeeded", {2: 0.1, 4: 0.1})
    _job(db, sweep_id, 1, "failed", {2: 0.1})  # not completed: does not count
    _job(db, sweep_id, 2, "pruned", {2: 5.0})
    _job(db, sweep_id, 3, "succeeded", {2: 0.2, 4: 0.2})
    assert _ask(db, _job(db, sweep_id, 4, "running", {2: 9.0}), 4, 9.0) is None


def test_asking_in_a_sweep_of_a_hundred_jobs_takes_milliseconds(db):
    sweep_id, _ = _sweep(db, {"type": "successive_halving", "min_resource": 1})
    steps = list(range(1, 21))
    for number in range(99):
        _job(db, sweep_id, number, "succeeded", _curve(number, steps))
    asking = _job(db, sweep_id, 99, "running", {s: 0.5 for s in steps[:9]})
    started = time.perf_counter()
    _ask(db, asking, 10, 0.5)
    took = time.perf_counter() - started
    print(f"should_prune over 100 jobs x 20 reports: {took * 1000:.0f} ms")
    assert took < 5.0


def test_the_sampler_is_told_a_pruned_trial_as_optuna_records_one():
    spec = SweepSpec.model_validate({
        "base": load_example("digits-mlp"), "method": "tpe", "budget": {"trials": 20},
        "parameters": {"optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True}},
        "pruner": {"type": "median"}})
    done = Trial(0, {"optimizer.lr": 0.01}, [TrialJob("a", 0, "succeeded", 0.4, 0, 9.0)])
    pruned = Trial(1, {"optimizer.lr": 0.0001}, [TrialJob(
        "b", 0, "pruned", 2.3, 0, 2.0, pruned={"step": 30, "value": 2.3, "reason": "..."})])
    assert (pruned.state, pruned.value, pruned.values) == ("pruned", None, [2.3])
    study = _study(spec, [done, pruned], None, space.distributions(spec), with_unfinished=True)
    frozen = study.get_trials(deepcopy=False)
    assert [t.state for t in frozen] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert frozen[1].intermediate_values == {30: 2.3}
    assert 1e-4 <= next_params(spec, [done, pruned], 2)["optimizer.lr"] <= 0.1
    assert best_trial([done, pruned], "min") is done


def test_the_pruning_example_passes_the_sweep_check():
    document = json.loads((ROOT / "examples" / "sweeps" / "lr-digits-pruned.json").read_text())
    checked = check_sweep(SweepSpec.model_validate(document),
                          Settings(database_url="postgresql://unused@127.0.0.1/x"))
    assert checked.spec.pruner.knobs == {"n_startup_trials": 4, "n_warmup_steps": 26}


def test_the_terminal_says_pruned_with_the_reason_and_the_value_it_stopped_at():
    reason = "pruned at step 3: val_loss 2.303 was worse than the median 1.95 of ..."
    job = {"id": "0" * 36, "name": "t1", "state": "pruned", "attempt": 1, "error": reason,
           "progress": {"epoch": 1, "epochs": 2, "step": 3, "total_steps": 12},
           "created_at": "2026-12-06T00:00:00+00:00", "started_at": "2026-12-06T00:00:01+00:00",
           "finished_at": "2026-12-06T00:00:04+00:00", "summary": {}}
    assert summary_block(job).endswith(f"pruned    {reason}")
    trial = {"number": 1, "params": {"optimizer.lr": 1e-7}, "state": "pruned", "value": None,
             "std": None, "values": [2.303], "jobs": [{"duration_s": 3.0}],
             "pruned": {"step": 3, "value": 2.303}}
    sweep = SweepResult(id="f" * 36, name="s", state="succeeded", trials_planned=3,
                  objective={"metric": "val_loss", "mode": "min", "at": "best"},
                  spec={"parameters": {"optimizer.lr": {}}}, trials=[trial])
    assert "2.303 @3" in trials_table(sweep)
    assert "1/3 trials ended (1 pruned);" in headline(sweep)
