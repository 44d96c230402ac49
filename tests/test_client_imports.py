"""The client loads no server code: a service that imports it pulls in httpx, not PyTorch,
SQLAlchemy, Celery or traindock's api/worker/core/models (import-linter checks the source;
this checks what a fresh interpreter actually loads)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = {"torch", "sqlalchemy", "celery", "fastapi", "numpy", "api", "worker", "core", "models",
         "cli"}


def test_importing_the_client_loads_no_server_code():
    code = ("import json, sys; import traindock, traindock.client, traindock.webhooks; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout))
    assert "httpx" in loaded and "traindock" in loaded
    assert not loaded & HEAVY, loaded & HEAVY
