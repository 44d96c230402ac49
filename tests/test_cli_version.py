"""`traindock --version` and `-V` print the installed distribution's version, as the console
script a user runs, without reaching the API."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import traindock


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_distributions(flag: str) -> None:
    result = traindock(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"traindock {importlib.metadata.version('traindock')}\n"


def test_the_console_script_has_it_too() -> None:
    script = Path(sys.executable).with_name("traindock")
    script = script if script.exists() else shutil.which("traindock")
    if script is None:
        pytest.skip("no traindock console script: pip install -e .")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["traindock", importlib.metadata.version("traindock")]
