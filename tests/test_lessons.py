"""Every lesson spec (examples/lessons/<lesson>/<variant>.json) validates over HTTP, is named
after its file and is documented in docs/lessons.md; the diagnosis benchmark's manifest names
specs that exist and findings the contract knows.

The lessons that use the lesson knobs (`dataset.n_train`, the textbook Xavier's gain) are
checked as the others: they validate with no warning."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT

LESSONS = ROOT / "examples" / "lessons"
SPECS = sorted(str(path.relative_to(LESSONS).with_suffix("")) for path in LESSONS.glob("*/*.json"))
# Lessons whose point is something the validator may warn about.
MAY_WARN = {"standardisation/none"}
# The contract's stable finding names (docs/lessons.md, /v1/jobs/{id} diagnosis).
FINDINGS = {
    "divergence", "suspicious_initial_loss", "stuck_at_chance", "lr_too_high", "lr_too_low",
    "vanishing_gradients", "exploding_gradients", "dead_units", "saturation", "overfitting",
    "underfitting", "noisy_loss", "unnormalized_inputs",
}
# Named by the preflight (worker/preflight.py), joined to the job's diagnosis: the bench may
# allow them, never expect them (its runs are scored on the training's rules).
PREFLIGHT_FINDINGS = {"cannot_overfit_small_batch"}


def load(name: str) -> dict:
    return json.loads((LESSONS / f"{name}.json").read_text())


def test_there_is_a_lesson_for_each_classic() -> None:
    lessons = {name.split("/")[0] for name in SPECS}
    assert lessons == {
        "learning-rate", "deep-sigmoid", "init", "optimizers", "overfitting", "batch-size",
        "warmup", "augmentation", "standardisation", "sparsity", "cnn-params", "residual",
    }
    optimizers = {load(name)["optimizer"]["type"] + str(load(name)["optimizer"].get("momentum", ""))
                  for name in SPECS if name.startswith("optimizers/")}
    assert optimizers == {"sgd", "sgd0.9", "adagrad", "adadelta", "rmsprop", "adam"}


@pytest.mark.parametrize("name", SPECS)
def test_the_lesson_is_named_after_its_file(name: str) -> None:
    assert load(name)["name"] == name.replace("/", "-")


@pytest.mark.parametrize("name", SPECS)
def test_the_lesson_validates(name: str, client) -> None:
    spec = load(name)
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text
    if name not in MAY_WARN:
        assert response.json()["warnings"] == [], response.json()["warnings"]



def test_the_cnn_heads_differ_only_in_their_parameters(client) -> None:
    """The global-pooling head has far fewer parameters than the flatten head on 8x8 digits:
    the lesson's starting point before it tries other input sizes."""
    counts = {}
    for head in ("global-pool", "flatten"):
        response = client.post("/v1/jobs/validate", json=load(f"cnn-params/{head}"))
        assert response.status_code == 200, response.text
        counts[head] = response.json()["model"]["total_params"]
    conv = 1 * 16 * 9 + 16 + 16 * 32 * 9 + 32
    assert counts == {"global-pool": conv + 32 * 10 + 10, "flatten": conv + 32 * 64 * 10 + 10}


def test_every_lesson_is_documented() -> None:
    doc = (ROOT / "docs" / "lessons.md").read_text()
    for name in SPECS:
        assert f"examples/lessons/{name}.json" in doc, name


def test_the_benchmark_manifest_is_sound() -> None:
    """Specs exist, finding names are the contract's, and every healthy run has 3 seeds."""
    runs = json.loads((ROOT / "bench" / "diagnosis" / "manifest.json").read_text())["runs"]
    assert {run["spec"] for run in runs if run.get("expect")} >= {
        "bench/diagnosis/specs/autotrainer-vanishing.json",
        "bench/diagnosis/specs/autotrainer-oscillation.json",
    }
    for run in runs:
        assert (ROOT / run["spec"]).is_file(), run["spec"]
        assert set(run.get("expect", [])) <= FINDINGS, run
        named = set(run.get("expect", [])) | set(run.get("allow", []))
        assert named <= FINDINGS | PREFLIGHT_FINDINGS, named - FINDINGS - PREFLIGHT_FINDINGS
        if not run.get("expect"):
            assert len(set(run["seeds"])) >= 3, run
    faulty = {name for run in runs for name in run.get("expect", [])}
    assert faulty >= FINDINGS - {"unnormalized_inputs"}, FINDINGS - faulty
