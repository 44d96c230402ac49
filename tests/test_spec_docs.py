"""docs/spec.md is generated from the pydantic models: it must be current, and every spec
field must be in it with a description, so that a new field or variant cannot go undocumented."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from models.strict import StrictModel

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "docs" / "generate_spec.py"


@pytest.fixture(scope="module")
def generator():
    # docs/ is not a package: load the script as a module.
    spec = importlib.util.spec_from_file_location("generate_spec", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(generator) -> str:
    return generator.generate()


def test_spec_md_is_current():
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, (
        "docs/spec.md is stale: run `python docs/generate_spec.py` and commit the result\n"
        + result.stdout + result.stderr
    )


def test_check_mode_fails_on_a_stale_file(generator, tmp_path, monkeypatch):
    stale = tmp_path / "spec.md"
    stale.write_text(generator.generate().replace("| `epochs` |", "| `epoch` |"))
    monkeypatch.setattr(generator, "OUTPUT", stale)
    assert generator.main(["--check"]) == 1
    generator.main([])
    assert generator.main(["--check"]) == 0


def test_every_field_of_every_spec_class_is_documented(generator, generated):
    catalogue = generator.Catalogue()
    missing = [
        f"{model.__name__}.{name}"
        for model in catalogue.spec_classes()
        for name in model.model_fields
        if f"| `{name}` |" not in generated
    ]
    assert not missing, f"fields without a row in docs/spec.md: {missing}"


def test_every_variant_has_a_section(generator, generated):
    catalogue = generator.Catalogue()
    headings = set(re.findall(r"^#+ (.+)$", generated, flags=re.M))
    missing = [
        generator.variant_title(block, model)
        for block in catalogue.blocks if block.tag
        for model in block.models
        if generator.variant_title(block, model) not in headings
    ]
    assert not missing, f"variants without a section in docs/spec.md: {missing}"


def test_the_walk_reaches_the_sections_and_stops_at_recursion(generator):
    catalogue = generator.Catalogue()
    paths = {block.path for block in catalogue.blocks}
    assert {"dataset", "model", "model.layers", "loss", "optimizer", "schedule"} <= paths
    layers = next(b for b in catalogue.blocks if b.path == "model.layers")
    residual = next(m for m in layers.models if generator.tag_value(m, layers.tag) == "residual")
    # residual.layers holds layers again: linked to the same block, not walked a second time
    assert catalogue.find(residual.model_fields["layers"].annotation) is layers


def test_every_field_has_a_description(generator):
    """Fails while someone adds a field without `Field(description=...)`: add one."""
    catalogue = generator.Catalogue()
    tags = catalogue.tag_fields()  # `type` says which variant: its meaning is the section's
    missing = [
        f"{model.__module__}.{model.__name__}.{name}"
        for model in catalogue.spec_classes()
        for name, info in model.model_fields.items()
        if not (info.description or "").strip() and (model, name) not in tags
    ]
    assert not missing, (
        f"{len(missing)} spec fields have no description; give each a "
        f"Field(description=...), then run `python docs/generate_spec.py`:\n"
        + "\n".join(missing)
    )


class _Leaf(StrictModel):
    type: Literal["leaf"]
    size: int = Field(3, ge=1, le=9, description="how big")


class _Tree(StrictModel):
    """A node holding nodes."""

    type: Literal["tree"]
    children: list[_Node] = Field(min_length=1, description="the nodes below")


_Node = Annotated[_Leaf | _Tree, Field(discriminator="type")]
_Tree.model_rebuild()


class _Root(StrictModel):
    node: _Node = Field(description="the top node")
    count: int = Field(1, ge=0, le=5)  # no description: the test must notice


def test_a_toy_spec_is_walked_rendered_and_checked(generator):
    """A recursive union, a new section and a field without a description, on a toy model,
    so that this holds whatever the real JobSpec looks like today."""
    catalogue = generator.Catalogue(_Root)
    assert [b.path for b in catalogue.blocks] == ["jobspec", "node"]
    text = generator.generate("# Toy\n\n<!-- generated: jobspec -->\n\n"
                              "<!-- generated: remaining -->\n", root=_Root)
    assert "## node" in text and "### `leaf` node" in text and "### `tree` node" in text
    assert "| `size` | integer | `3` | 1 to 9 | how big |" in text
    assert '{"type": "tree", "children": [{"type": "leaf"}]}' in text
    assert "one of the [node types](#node)" in text  # children link back, not walked again
    undescribed = [name for name, info in _Root.model_fields.items() if not info.description]
    assert undescribed == ["count"]
