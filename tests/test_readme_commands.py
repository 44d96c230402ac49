"""The README's two Quickstart commands, as CI reads them (.ci/readme_command.py): step 1
installs no extra and ends by starting the service, which .ci/first_command.sh runs as
written in a fresh virtualenv; step 2 installs the test extra and runs pytest."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def load_reader():
    path = ROOT / ".ci" / "readme_command.py"
    spec = importlib.util.spec_from_file_location("readme_command", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.quickstart_command


def test_step_1_installs_no_extra_and_starts_the_service() -> None:
    command = load_reader()(README.read_text(), 1)
    assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert re.search(r"&& pip install torch==[0-9.]+ && pip install -e \. && traindock up$",
                     command)


def test_step_2_installs_the_test_extra_and_runs_pytest() -> None:
    reader = load_reader()
    first, second = reader(README.read_text(), 1), reader(README.read_text(), 2)
    assert second.endswith("&& pip install -e '.[test]' && pytest")
    pin = re.compile(r"pip install torch==[0-9.]+")
    assert pin.search(first).group() == pin.search(second).group()


def test_the_ci_script_reads_the_command_from_the_readme() -> None:
    script = (ROOT / ".ci" / "first_command.sh").read_text()
    assert ".ci/readme_command.py\" 1" in script
    assert "pip install" not in script  # nothing copied from the README
    assert ".ci/first_command.sh" in (ROOT / ".ci" / "run").read_text()
    printed = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_command.py"), "1"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == load_reader()(README.read_text(), 1)


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        ("# t\n\n## Usage\n", "no '## Quickstart' section"),
        ("# t\n\n## Quickstart\n\n**1. Go**\n\n```bash\na\nb\n```\n", "one command line"),
        ("# t\n\n## Quickstart\n\n**2. Go**\n\n```bash\na\n```\n", r"no step \*\*1\."),
    ],
)
def test_a_readme_the_reader_cannot_follow_is_an_error(readme: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_reader()(readme, 1)
