"""examples/service_client.py runs against the live API and worker as a user would run it:
the job trains, its metrics print, the best checkpoint is saved and loads, and the webhooks
its receiver got were verified with traindock.webhooks.verify."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import torch

from tests.conftest import ROOT


def test_the_service_client_example_runs(api_url, worker, service_env, tmp_path):
    env = service_env | {"TRAINDOCK_URL": api_url}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "service_client.py"), "--epochs", "2",
         "--dest", str(tmp_path / "weights")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    print(out)  # shown with -s: what the docs quote
    assert " succeeded" in out and "val_loss by epoch: " in out
    [line] = [line for line in out.splitlines() if line.startswith("webhooks verified: ")]
    assert "'job.succeeded'" in line and "not delivered" not in line, out
    assert "REFUSED" not in out
    [saved] = (tmp_path / "weights").iterdir()
    assert f"saved to {saved}" in out
    assert hashlib.sha256(saved.read_bytes()).hexdigest()[:12] in out
    assert torch.load(saved, weights_only=True)["epoch"] >= 1
