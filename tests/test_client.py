"""traindock.client.Client against a real API and worker: submit, wait, metrics, the best
checkpoint downloaded and loaded, each kind of refusal as its exception, and paging."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import free_port, load_example
from traindock import Client, Conflict, Invalid, NotFound, Unavailable
from traindock.results import Checkpoint, Job, Series


@pytest.fixture
def td(api_url: str) -> Iterator[Client]:
    with Client(api_url, timeout=30) as client:
        yield client


def small_spec(epochs: int = 2) -> dict:
    spec = load_example("digits-mlp")
    spec["training"] = spec["training"] | {"epochs": epochs}
    return spec


def test_submit_wait_metrics_and_the_best_checkpoint(td: Client, worker, tmp_path: Path):
    key = f"client-test-{uuid.uuid4()}"
    submitted = td.submit(small_spec(), idempotency_key=key)
    assert isinstance(submitted, Job) and submitted.state == "queued"
    assert td.submit(small_spec(), idempotency_key=key).id == submitted.id  # a safe retry
    with pytest.raises(Conflict):
        td.submit(small_spec(epochs=1), idempotency_key=key)

    job = td.wait(submitted.id[:8], timeout=120, poll_s=0.2)
    assert (job.id, job.state, job.attempt) == (submitted.id, "succeeded", 1), job.error
    assert job.final and job.finished_at >= job.started_at >= job.created_at
    assert job.progress.step == job.progress.total_steps > 0
    assert job.spec["training"]["epochs"] == 2 and job.test["test_accuracy"] > 0.5

    series = td.metrics(job, names=["train_loss", "val_loss"])
    assert set(series) == {"train_loss", "val_loss"}
    assert all(isinstance(s, Series) for s in series.values())
    assert series["val_loss"].epoch == [1, 2] and series["val_loss"].last.step == job.progress.step
    assert len(td.metrics(job.id, since_step=series["val_loss"].step[0])["val_loss"]) == 1

    checkpoints = td.checkpoints(job)
    assert all(isinstance(c, Checkpoint) for c in checkpoints)
    best = next(c for c in checkpoints if c.best)
    path = td.download_checkpoint(job.id, "best", dest=tmp_path)
    assert path == tmp_path / best.filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == best.sha256
    assert path.stat().st_size == best.size
    state = torch.load(path, weights_only=True)
    assert state["step"] == best.step
    assert sorted(p.name for p in tmp_path.iterdir()) == [best.filename]  # no temp file left
    newest = td.download_checkpoint(job.id, dest=tmp_path / "newest.pt")
    assert torch.load(newest, weights_only=True)["step"] == max(c.step for c in checkpoints)

    assert "trained in" in td.logs(job)
    # The same log as it arrives; followed, it ends with the attempt (which has ended here).
    for follow in (False, True):
        with td.open_log(job, follow=follow) as log:
            assert (log.attempt, log.skipped) == (1, 0)
            assert b"".join(log).decode() == td.logs(job)
    with td.open_log(job, tail=1) as log:
        assert b"".join(log).decode() == td.logs(job).splitlines(keepends=True)[-1]
    assert td.deliveries(job) == []  # no notify in its spec
    assert td.webhook_secret().startswith("whsec_")
    with pytest.raises(Conflict, match="already ended"):
        td.cancel(job)
    td.delete(job)
    with pytest.raises(NotFound):
        td.job(job.id)


def test_a_bad_spec_is_invalid_naming_the_field(td: Client):
    spec = small_spec()
    spec["model"]["layers"] = [{"type": "linear", "out_features": 10}]  # no flatten first
    for call in (td.validate, td.submit):
        with pytest.raises(Invalid) as caught:
            call(spec)
        assert caught.value.status == 422
        assert caught.value.fields == ["model.layers[0]"], caught.value.errors
        assert "add a flatten layer first" in str(caught.value)
    spec = small_spec()
    spec["optimizer"]["lr"] = -1
    with pytest.raises(Invalid) as caught:
        td.validate(spec)
    assert caught.value.fields == ["optimizer.lr"]
    assert td.validate(small_spec()).model["total_params"] > 0


def test_an_unknown_job_is_not_found(td: Client):
    missing = str(uuid.uuid4())
    for call in (td.job, td.metrics, td.checkpoints, td.cancel, td.delete, td.deliveries):
        with pytest.raises(NotFound, match=missing):
            call(missing)
    with pytest.raises(NotFound, match="no job id starts with"):
        td.job("ffffffff-ffff")


def test_an_unreachable_api_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, timeout=5) as td, pytest.raises(Unavailable) as caught:
        td.job(str(uuid.uuid4()))
    assert url in str(caught.value) and "TRAINDOCK_URL" in str(caught.value)
    assert caught.value.status is None


def test_jobs_reads_every_page(td: Client):
    name = f"client-paging-{uuid.uuid4().hex[:8]}"
    submitted = []
    for _ in range(5):
        job = td.submit(small_spec() | {"name": name})
        td.cancel(job)  # queued: ends at once; claimed already: stops within a second
        submitted.append(job.id)
    newest_first = submitted[::-1]
    # Pages of 2 hold fewer than these 5 jobs: the client must follow the cursor.
    assert td.transport.get("/v1/jobs", limit=2)["next_cursor"]
    assert [j.id for j in td.jobs(name=name, page_size=2)] == newest_first  # each once
    assert [j.id for j in td.jobs(name=name, page_size=2, limit=3)] == newest_first[:3]
    final = {job_id: td.wait(job_id, timeout=60, poll_s=0.1).state for job_id in submitted}
    for state in set(final.values()):
        assert [j.id for j in td.jobs(state=state, name=name, page_size=2)] == [
            job_id for job_id in newest_first if final[job_id] == state]
    assert [j.id for j in td.jobs(id_prefix=submitted[0][:12])] == [submitted[0]]


def test_the_integration_docs_first_example_runs(api_url: str, worker, tmp_path: Path,
                                                 monkeypatch, capsys):
    """docs/integration.md's first Python block, run as written against the live API."""
    import re

    from tests.conftest import ROOT

    section = (ROOT / "docs" / "integration.md").read_text().split("\n## Python client\n")[1]
    block = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL).group(1)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINDOCK_URL", api_url)
    exec(compile(block, "docs/integration.md", "exec"), {})
    assert capsys.readouterr().out.startswith("succeeded {'test_loss': ")
    [saved] = (tmp_path / "models").iterdir()
    assert torch.load(saved, weights_only=True)["step"] > 0


def test_the_client_knows_every_field_the_api_documents(td: Client):
    """Each result type has a field for every property of its schema in the live API's
    OpenAPI document: a field the server gains is a field the client gains (an older client
    facing a newer server ignores it; that is test_client_answers.py's)."""
    import dataclasses

    from traindock.results import Delivery, Predictions, Sweep, Validation

    schemas = td.transport.get("/openapi.json")["components"]["schemas"]
    pairs = {"JobOut": Job, "JobListItem": Job, "CheckpointOut": Checkpoint,
             "DeliveryOut": Delivery, "SeriesOut": Series, "ValidationOut": Validation,
             "SweepOut": Sweep, "SweepDetail": Sweep, "PredictOut": Predictions}
    for schema, cls in pairs.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = set(schemas[schema]["properties"]) - fields
        assert not missing, f"{cls.__name__} lacks {sorted(missing)} of the API's {schema}"


def test_the_transport_uploads_a_file_as_the_cli_does(td: Client, tmp_path: Path):
    """Transport.upload, for the terminal client's `datasets upload` once it uses this one."""
    import numpy as np

    from traindock import TraindockError

    rng = np.random.default_rng(0)
    path = tmp_path / "train.npz"
    np.savez(path, x_train=rng.normal(size=(60, 4)).astype("float32"),
             y_train=rng.integers(0, 3, 60))
    name = f"client-upload-{uuid.uuid4().hex[:8]}"
    dataset = td.transport.upload("/v1/datasets", path, {"name": name})
    assert (dataset["name"], dataset["input_shape"], dataset["splits"]["train"]) == (
        name, [4], 60)
    with pytest.raises(Conflict, match=name):
        td.transport.upload("/v1/datasets", path, {"name": name})
    with pytest.raises(TraindockError, match="cannot read"):
        td.transport.upload("/v1/datasets", tmp_path / "absent.npz", {"name": "x"})
