"""Runs you can tell apart and keep (issue 13, findings 4-6): a learning-rate comparison of two
jobs of one name, trained once for the module by the real worker, then downloaded, listed and
looked up by id prefix with the `traindock` CLI and over HTTP; the best checkpoint's choice on
rows written to the real database; retention's choice of what to keep."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import make_engine
from core.repo import checkpoints as checkpoint_repo
from core.repo import jobs as job_repo
from core.tables import Job
from tests.conftest import load_example, wait_for_state
from tests.test_cli import traindock
from tests.test_dashboard import CHROMIUM, browser, expect, page, screenshot  # noqa: F401
from worker.callbacks import CheckpointSink

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install -y chromium")
NAME = "lr-compare"
RATES = (0.001, 0.003)


@dataclass
class Pair:
    ids: list[str]


@pytest.fixture(scope="module")
def pair(api_url: str, worker) -> Pair:
    """Two digits-mlp jobs that differ only in their learning rate, both succeeded."""
    ids = []
    with httpx.Client(base_url=api_url, timeout=30) as http:
        for lr in RATES:
            spec = load_example("digits-mlp") | {"name": NAME,
                                                 "training": {"epochs": 3, "batch_size": 64}}
            spec["optimizer"] = spec["optimizer"] | {"lr": lr}
            response = http.post("/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        for job_id in ids:
            job = wait_for_state(http, job_id, {"succeeded", "failed"}, 300)
            assert job["state"] == "succeeded", job["error"]
    return Pair(ids)


# ---- finding 4: downloads that never collide nor overwrite -----------------------------------

def test_two_jobs_of_one_name_download_to_two_files(pair, api_url, client, tmp_path):
    saved = []
    for job_id in pair.ids:
        result = traindock("download", job_id[:8], "--url", api_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        saved.append(tmp_path / result.stdout.strip())
    assert [p.name for p in saved] == [f"{NAME}-{i[:8]}-step-63.pt" for i in pair.ids]
    assert sorted(tmp_path.iterdir()) == sorted(saved)
    for job_id, path in zip(pair.ids, saved, strict=True):
        newest = client.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]
        assert newest["filename"] == path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == newest["sha256"]
        # the browser's name for it is the same
        response = client.get(f"/v1/jobs/{job_id}/checkpoints/{newest['id']}/download")
        assert f'filename="{path.name}"' in response.headers["content-disposition"]


def test_an_existing_file_is_replaced_only_with_force(pair, api_url, tmp_path):
    first = traindock("download", pair.ids[0], "--url", api_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / first.stdout.strip()
    path.write_bytes(b"my own notes")
    again = traindock("download", pair.ids[0], "--url", api_url, cwd=tmp_path)
    assert again.returncode == 1
    assert f"{path.name} already exists; nothing was downloaded. Pass --force" in again.stderr
    assert path.read_bytes() == b"my own notes"
    into = traindock("download", pair.ids[0], "-o", str(path), "--url", api_url)
    assert into.returncode == 1 and "--force" in into.stderr
    assert path.read_bytes() == b"my own notes"
    forced = traindock("download", pair.ids[0], "--force", "--url", api_url, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert path.read_bytes()[:2] == b"PK"  # a torch zip file again
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left


# ---- finding 5: the best checkpoint, kept, marked and downloadable ---------------------------

def test_the_best_checkpoint_is_marked_and_downloaded_with_best(pair, api_url, client, tmp_path):
    job_id = pair.ids[1]
    rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    best = [row for row in rows if row["best"]]
    assert len(best) == 1
    assert best[0]["metrics"]["val_loss"] == min(row["metrics"]["val_loss"] for row in rows)
    summary = client.get(f"/v1/jobs/{job_id}").json()["summary"]
    assert best[0]["step"] == summary["best"]["val_loss"]["step"]
    result = traindock("download", job_id[:8], "--best", "--url", api_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / result.stdout.strip()
    assert path.name == best[0]["filename"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == best[0]["sha256"]
    both = traindock("download", job_id, "--best", "--checkpoint", "1", "--url", api_url)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


ROWS = [  # step, val_loss, val_accuracy
    (10, 0.50, 0.80),
    (20, 0.40, 0.70),
    (30, 0.60, 0.75),
    (40, 0.55, 0.72),
]


def running_job_with_checkpoints(settings, spec: dict) -> str:
    """A job row claimed by no worker, with the checkpoint rows of ROWS (no files)."""
    engine = make_engine(settings)
    try:
        with Session(engine) as session, session.begin():
            job_id = job_repo.create_job(session, name="best-probe", spec=spec, max_attempts=1,
                                         model_summary={}, total_steps=40).id
            assert job_repo.claim_job(session, job_id, "test", 600) is not None
        with Session(engine) as session, session.begin():
            for step, loss, accuracy in ROWS:
                checkpoint_repo.add_checkpoint(
                    session, job_id=job_id, attempt=1, step=step, epoch=step // 10,
                    path=f"/nowhere/step-{step}.pt", sha256="0" * 64, size=1,
                    metrics={"val_loss": loss, "val_accuracy": accuracy,
                             "train_loss": 0.01 * step})
    finally:
        engine.dispose()
    return str(job_id)


@pytest.mark.parametrize(("watching", "best_step"), [
    ({}, 20),  # val_loss, lower is better
    ({"training": {"early_stopping": {"monitor": "val_accuracy", "patience": 3}}}, 10),
    ({"training": {"early_stopping": {"monitor": "val_loss", "mode": "max"}}}, 30),
    ({"schedule": {"type": "reduce_on_plateau", "monitor": "val_accuracy"}}, 10),
])
def test_best_is_by_the_monitored_metric_and_its_direction(settings, api_url, client, watching,
                                                           best_step):
    spec = load_example("digits-mlp")
    for section, values in watching.items():
        spec[section] = (spec.get(section) or {}) | values
    job_id = running_job_with_checkpoints(settings, spec)
    rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert [row["step"] for row in rows if row["best"]] == [best_step]


def retention(spec: dict, keep: int) -> CheckpointSink:
    """The sink as worker/child.py builds it; _beyond_retention touches neither the database
    nor the disk, so neither is given."""
    return CheckpointSink(None, Path("/nowhere"), uuid.uuid4(), 1, spec, {}, 1, keep, None)


def test_retention_keeps_the_last_n_and_the_best_by_the_monitored_metric():
    rows = [SimpleNamespace(id=step, step=step, metrics={"val_loss": loss, "val_accuracy": acc})
            for step, loss, acc in ROWS]
    plain = retention(load_example("digits-mlp"), keep=1)
    assert [r.step for r in plain._beyond_retention(rows)] == [10, 30]  # 20 best, 40 last
    spec = load_example("digits-mlp")
    spec["training"] = spec["training"] | {"early_stopping": {"monitor": "val_accuracy"}}
    assert [r.step for r in retention(spec, keep=1)._beyond_retention(rows)] == [20, 30]
    nan = [SimpleNamespace(id=1, step=1, metrics={"val_loss": float("nan")}), *rows]
    assert 1 in [r.id for r in plain._beyond_retention(nan)]  # a NaN is never the best


# ---- finding 6: id prefixes ----------------------------------------------------------------

def test_a_prefix_on_the_api_names_the_job_it_starts(pair, client):
    full = pair.ids[0]
    for path in ("", "/checkpoints", "/metrics"):
        response = client.get(f"/v1/jobs/{full[:8]}{path}")
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == [{
            "field": "path.job_id", "type": "job_id_prefix",
            "message": f"path.job_id: '{full[:8]}' is not a full job id: it is the start of job "
                       f"{full}; use the full id",
        }]
    bad = client.get("/v1/jobs/not-an-id!")
    assert bad.status_code == 422
    message = bad.json()["detail"][0]["message"]
    assert message.startswith("path.job_id: 'not-an-id!' is not a job id")
    assert "valid UUID" not in bad.text
    listed = client.get("/v1/jobs", params={"id_prefix": full[:8]}).json()["items"]
    assert [job["id"] for job in listed] == [full]
    nonsense = client.get("/v1/jobs", params={"id_prefix": "xyz"})
    assert nonsense.status_code == 422 and "id_prefix: 'xyz'" in nonsense.text


@pytest.fixture(scope="module")
def twins(settings) -> list[str]:
    """Two jobs whose ids share their first 8 characters."""
    ids = [f"a1b2c3d4-0000-4000-8000-00000000000{i}" for i in (1, 2)]
    engine = make_engine(settings)
    try:
        with Session(engine) as session, session.begin():
            for job_id in ids:
                row = job_repo.create_job(session, name="twin", spec=load_example("digits-mlp"),
                                          max_attempts=1, model_summary={}, total_steps=1)
                session.execute(update(Job).where(Job.id == row.id)
                                .values(id=uuid.UUID(job_id)))
    finally:
        engine.dispose()
    return ids


def test_an_ambiguous_prefix_lists_the_candidates(twins, api_url, client):
    response = client.get("/v1/jobs/a1b2c3d4/checkpoints")
    assert response.status_code == 422
    message = response.json()["detail"][0]["message"]
    assert message == (f"path.job_id: 'a1b2c3d4' is not a full job id: it is the start of several "
                       f"({twins[0]}, {twins[1]}); use the full id of one")
    assert client.get("/v1/jobs/a1b2c3d4-0000-4000-8000-00000000000").status_code == 422
    assert client.get(f"/v1/jobs/{twins[1]}").status_code == 200
    missing = client.get("/v1/jobs/a1b2c3d4-ffff")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no job id starts with 'a1b2c3d4-ffff'"
    cli = traindock("show", "a1b2c3d4", "--url", api_url)
    assert cli.returncode == 1
    assert "'a1b2c3d4' is the start of 2 job ids" in cli.stderr
    assert traindock("show", "a1b2c3d4-0000-4000-8000-000000000002", "--url",
                     api_url).returncode == 0


# ---- telling jobs of one name apart ----------------------------------------------------------

def test_ls_shows_a_spec_digest_and_the_fields_that_differ(pair, api_url, client):
    result = traindock("ls", "--limit", "500", "--url", api_url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[-2:] == ["spec", "differs"]
    ours = {r.split()[0]: r for r in rows if r.split()[0] in {i[:8] for i in pair.ids}}
    items = {job["id"][:8]: job
             for job in client.get("/v1/jobs", params={"limit": 500}).json()["items"]}
    digests = set()
    for job_id, lr in zip(pair.ids, RATES, strict=True):
        row, item = ours[job_id[:8]], items[job_id[:8]]
        assert item["differs"] == {"optimizer.lr": lr}
        assert row.split()[-2:] == [item["spec_digest"], f"optimizer.lr={lr}"]
        digests.add(item["spec_digest"])
    assert len(digests) == 2
    assert all(len(d) == 8 for d in digests)


def test_the_same_spec_under_two_names_has_one_digest(client):
    spec = load_example("digits-mlp") | {"training": {"epochs": 1}}
    ids = [client.post("/v1/jobs", json=spec | {"name": name}).json()["id"]
           for name in ("same-a", "same-b")]
    for job_id in ids:
        client.post(f"/v1/jobs/{job_id}/cancel")
    items = {job["id"]: job for job in client.get("/v1/jobs", params={"limit": 50}).json()["items"]}
    assert items[ids[0]]["spec_digest"] == items[ids[1]]["spec_digest"]
    assert items[ids[0]]["differs"] == {} == items[ids[1]]["differs"]


def test_ls_names_at_most_three_differing_fields():
    from cli.ls import differences

    assert differences({"a.b": 1, "c": "x", "d": [1, 2], "e": None}) == "a.b=1 c=x d=[1, 2] (+1)"


# ---- the dashboard ---------------------------------------------------------------------------

@needs_chromium
def test_dashboard_takes_id_prefixes_and_marks_the_best_checkpoint(pair, page, client):  # noqa: F811
    first, second = pair.ids
    page.goto(f"/jobs/{first[:8]}")
    expect(page).to_have_url(re.compile(f"/jobs/{first}$"))
    expect(page.locator("#job-name")).to_have_text(NAME)

    page.goto(f"/jobs/{second}")
    best = [c for c in client.get(f"/v1/jobs/{second}/checkpoints").json() if c["best"]][0]
    marked = page.locator("#checkpoints tr.best")
    expect(marked).to_have_count(1)
    expect(marked.locator("td").first).to_have_text(str(best["step"]))
    expect(marked.locator(".best-mark")).to_have_text("best")
    link = marked.locator("a", has_text="download")
    expect(link).to_have_attribute("download", best["filename"])
    screenshot(page, "best-checkpoint")

    page.goto(f"/compare?ids={first[:8]},{second[:8]}&metric=val_loss")
    expect(page).to_have_url(re.compile(f"/compare\\?ids={first},{second}&metric=val_loss$"))
    expect(page.locator("#chart-compare")).to_have_attribute("data-series", "2")
    expect(page.locator("#differences thead")).to_contain_text("optimizer.lr")


@needs_chromium
def test_job_list_shows_the_digest_and_what_differs(pair, page, client):  # noqa: F811
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["items"]
    items = {job["id"]: job for job in listed}
    page.goto(f"/?name={NAME}")
    for job_id, lr in zip(pair.ids, RATES, strict=True):
        tag = page.locator(f'tr[data-job-id="{job_id}"] .spec-tag')
        expect(tag).to_have_text(f"{items[job_id]['spec_digest']} optimizer.lr={lr}")
    screenshot(page, "list-spec-tags")


def test_tell_apart_compares_values_by_type_and_skips_identical_specs():
    from core.spec_digest import tell_apart

    base = {"name": "x", "a": {"b": 1, "c": []}, "d": True}
    jobs = [("x", base), ("x", base | {"d": 1}), ("x", base | {"a": {"b": 1}}), ("y", base)]
    (d0, f0), (d1, f1), (d2, f2), (d3, f3) = tell_apart(jobs)
    assert f0 == {"a.c": [], "d": True}  # true and 1 are different values; so are [] and unset
    assert f1 == {"a.c": [], "d": 1}
    assert f2 == {"a.c": None, "d": True}
    assert f3 == {} and d3 == d0  # another name, the same spec: the same digest
    assert len({d0, d1, d2}) == 3
    same = tell_apart([("x", base), ("x", base | {"name": "other"})])
    assert same[0] == same[1] and same[0][1] == {}
