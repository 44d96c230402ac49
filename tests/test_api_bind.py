"""The API is published only with keys on: `traindock api` refuses TRAINDOCK_AUTH=off on an
address other than loopback, before it listens."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def _api(host: str, auth: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env["TRAINDOCK_AUTH"] = auth
    return subprocess.run([sys.executable, "-m", "cli.main", "api", "--host", host,
                           "--port", "1"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_keys_off_is_refused_on_every_interface():
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        run = _api(host, "off")
        assert run.returncode == 2, run.stderr
        assert f"TRAINDOCK_AUTH=off on --host {host}" in run.stderr
        assert "--host 127.0.0.1" in run.stderr
