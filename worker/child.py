"""The training child: `python -m worker.child JOB_ID ATTEMPT`.

A fresh interpreter per attempt keeps CUDA state and leaked memory out of the worker. Its
exit code tells the supervisor what happened (see EXIT_* below); on a training error it also
records a message for the user in the job's `error`.
"""

from __future__ import annotations

import logging
import sys
import traceback
import uuid

import torch
from sqlalchemy.orm import Session

from core.db import make_engine
from core.jobspec import JobSpec
from core.repo import jobs as job_repo
from core.settings import get_settings
from models.build import build_model
from worker.callbacks import CheckpointSink, LeaseLost, MetricSink
from worker.data import prepare_data
from worker.optim import build_loss, build_optimizer
from worker.train import TrainingDiverged, train

EXIT_OK = 0
EXIT_TRAINING_ERROR = 3  # the job's spec or data made training fail: error recorded
EXIT_LEASE_LOST = 4  # another attempt owns the job: nothing to record
EXIT_CRASH = 5  # an unexpected exception: traceback recorded

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


def run(job_id: uuid.UUID, attempt: int) -> int:
    settings = get_settings()
    engine = make_engine(settings, pool_size=2)
    with Session(engine) as session:
        job = job_repo.get_job(session, job_id)
    if job is None or job.attempt != attempt or job.state != "running":
        return EXIT_LEASE_LOST
    try:
        spec = JobSpec.model_validate(job.spec)
        device = pick_device(spec.resources.device)
        torch.manual_seed(spec.training.seed)
        data = prepare_data(spec, device)
        model, _ = build_model(spec.model, data.input_shape)
        model.to(device)
        callbacks = [
            MetricSink(engine, job_id, attempt, settings.metric_flush_s),
            CheckpointSink(
                engine, settings.checkpoint_dir, job_id, attempt, job.spec, data.normalization,
                spec.training.checkpoint_every_epochs, settings.keep_checkpoints,
            ),
        ]
        train(spec, model, build_optimizer(spec, model), build_loss(spec), data, callbacks)
        return EXIT_OK
    except LeaseLost as exc:
        log.warning("%s", exc)
        return EXIT_LEASE_LOST
    except (TrainingDiverged, NoCuda) as exc:
        _record(engine, job_id, attempt, str(exc))
        return EXIT_TRAINING_ERROR
    except Exception as exc:
        log.exception("training crashed")
        tail = "".join(traceback.format_exception_only(exc)).strip()
        _record(engine, job_id, attempt, f"training crashed: {tail}")
        return EXIT_CRASH


def _record(engine, job_id: uuid.UUID, attempt: int, message: str) -> None:
    try:
        with Session(engine) as session, session.begin():
            job_repo.record_error(session, job_id, attempt, message)
    except Exception:  # the supervisor still records the exit code
        log.exception("could not record the error")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(uuid.UUID(argv[0]), int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
