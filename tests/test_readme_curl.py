"""The README's "A job with curl" block, run as written by bash against a live API and worker
(only its address changed): every command succeeds, the poll prints one short line per
second ending with `succeeded`, and the checkpoint it downloads loads with weights_only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from tests.conftest import ROOT, make_api_key

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def readme_curl_block() -> str:
    """The first bash block of the README's "A job with curl" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## A job with curl\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```bash\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block, "no ```bash block under ## A job with curl"
    return block.group(1)


def test_the_block_polls_with_one_short_line(tmp_path: Path) -> None:
    """The poll's own python, on a job as the API answers it, prints state and progress."""
    block = readme_curl_block()
    assert "python3 -m json.tool\n" not in block  # the 232-line poll
    poll = re.search(r"python3 -c '(import json, sys; j = json.load.*?)'; do", block, re.DOTALL)
    assert poll, block
    job = ('{"state": "running", "progress": {"epoch": 5, "step": 105, "total_steps": 420}, '
           '"error": null, "summary": {"best": {}}, "spec": {"name": "digits-mlp"}}')
    result = subprocess.run(["python3", "-c", poll.group(1)], input=job, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr  # not ended: the loop polls again
    assert result.stdout.split() == ["running", "step", "105/420"]


def test_the_block_runs_as_written(auth_api_url: str, settings, worker, tmp_path: Path) -> None:
    """Against an API that asks for keys, as `traindock up` serves it, with the key in
    TRAINDOCK_API_KEY as the README says to export it."""
    block = readme_curl_block()
    assert block.count('-H "$AUTH"') >= 8
    address = urlsplit(auth_api_url).netloc
    key = make_api_key(settings, "read,submit")
    assert block.count("localhost:8000") >= 8
    script = block.replace("localhost:8000", address)
    # -OJ saves the checkpoint in the working folder; -d @examples/... reads from it.
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": "", "TRAINDOCK_API_KEY": key})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    polls = [line for line in result.stdout.splitlines()
             if re.fullmatch(r"(queued|running|succeeded|failed|cancelled) step \d+/\d+ ?",
                             line)]
    assert polls and polls[-1].split()[:3] == ["succeeded", "step", "420/420"], result.stdout
    [checkpoint] = list(tmp_path.glob("*.pt"))
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 420
    # The cancel at the end finds the job ended: a 409 that says so, not a failure.
    assert result.stdout.rstrip().endswith("}"), result.stdout[-500:]
