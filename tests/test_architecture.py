"""The import rules of DESIGN.md, enforced by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every contract in pyproject.toml ran (counted there, so that adding one needs no edit here).
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"{contracts} kept, 0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path):
    """The contracts can fail: a copy of the tree where api imports worker is refused."""
    for name in ("api", "worker", "models", "core", "cli", "migrations", "traindock",
                 "inference", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    bad = tmp_path / "api" / "sneaky.py"
    bad.write_text("from worker import train  # noqa\n")
    result = subprocess.run(
        [shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode != 0
    assert "api and worker never import each other BROKEN" in result.stdout
