"""`traindock rm JOB`: over HTTP against the real API and a real worker."""

from __future__ import annotations

from tests.conftest import load_example, wait_for_state
from tests.test_cli import traindock


def test_rm_deletes_an_ended_job_and_refuses_a_live_one(api_url, worker, client):
    short = load_example("digits-mlp") | {"name": "cli-rm", "training": {"epochs": 1}}
    ended = client.post("/v1/jobs", json=short).json()["id"]
    assert wait_for_state(client, ended, {"succeeded", "failed"})["state"] == "succeeded"
    long = short | {"name": "cli-rm-live", "training": {"epochs": 500}}
    live = client.post("/v1/jobs", json=long).json()["id"]

    refused = traindock("rm", live[:8], "--url", api_url)
    assert refused.returncode == 1
    assert "cancel it first" in refused.stderr, refused.stderr
    client.post(f"/v1/jobs/{live}/cancel")

    result = traindock("rm", ended[:8], "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted {ended}"
    assert client.get(f"/v1/jobs/{ended}").status_code == 404
    again = traindock("rm", ended, "--url", api_url)
    assert again.returncode == 1 and f"no job with id {ended}" in again.stderr, again.stderr
