"""Exports checked by runtimes nobody here wrote: five jobs trained through the real stack (an
MLP, a CNN, a residual block, maxout, batchnorm in eval mode), each exported over HTTP; the
ONNX files run in onnxruntime, the .pt2 files in a fresh interpreter that cannot import
traindock, the safetensors weights load with safetensors.torch. On the job's own test split,
fed raw, every output is within 1e-5 of the bundle's PyTorch outputs with the same argmax."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy.orm import Session

from core import datasets
from core.db import make_engine
from core.specs.dataset import DatasetSpec
from inference.bundle import class_names_of
from inference.job_bundle import FileGone, dataset_info, job_bundle
from tests.conftest import wait_for_state

TOLERANCE = 1e-5
TRAINING = {"epochs": 1, "batch_size": 64, "seed": 0}
JOBS = {
    "mlp": ({"name": "digits", "n_train": 400}, [
        {"type": "flatten"}, {"type": "linear", "out_features": 32}, {"type": "relu"},
        {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 10}]),
    "cnn": ({"name": "digits", "n_train": 400}, [
        {"type": "conv2d", "out_channels": 4, "padding": "same"}, {"type": "relu"},
        {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
    "residual": ({"name": "spirals", "normalize": "minmax", "n_samples": 600}, [
        {"type": "linear", "out_features": 16}, {"type": "tanh"},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 16},
                                        {"type": "relu"}]},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 8}]},
        {"type": "linear", "out_features": 3}]),
    "maxout": ({"name": "digits", "n_train": 400}, [
        {"type": "flatten"}, {"type": "maxout", "out_features": 16, "pieces": 3},
        {"type": "linear", "out_features": 10}]),
    "batchnorm": ({"name": "digits", "n_train": 400}, [
        {"type": "conv2d", "out_channels": 4}, {"type": "batchnorm"}, {"type": "relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 16}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "linear", "out_features": 10}]),
}

FRESH_RUN = r"""
import importlib.util, json, sys
sys.path.append(sys.argv[1])  # torch's and numpy's site-packages, without its .pth files
found = [m for m in ("inference", "models", "core", "worker", "api", "cli", "traindock")
         if importlib.util.find_spec(m) is not None]
assert not found, f"traindock's packages are importable here: {found}"
import numpy as np, torch
for case in json.loads(sys.argv[2]):
    extra = {"traindock.json": ""}
    program = torch.export.load(case["pt2"], extra_files=extra)
    out = program.module()(torch.from_numpy(np.load(case["x"])))
    np.save(case["out"], out.detach().numpy())
    print(json.dumps(json.loads(extra["traindock.json"])["class_names"]))
"""


@pytest.fixture(scope="module")
def trained(api_url: str, worker, settings) -> dict[str, dict]:
    """The five jobs, trained side by side: name -> {id, bundle, x_test}."""
    with httpx.Client(base_url=api_url, timeout=60) as client:
        ids = {}
        for name, (dataset, layers) in JOBS.items():
            spec = {"name": f"export-{name}", "dataset": dataset,
                    "model": {"layers": layers}, "training": TRAINING,
                    "preflight": {"enabled": False}}  # its checks are not what is tested here
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
        for job_id in ids.values():
            job = wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"}, 180)
            assert job["state"] == "succeeded", job
    engine = make_engine(settings, pool_size=1)
    jobs = {}
    try:
        with Session(engine) as session:
            for name, job_id in ids.items():
                bundle = job_bundle(session, job_id, "best", settings.checkpoint_dir,
                                    settings.dataset_dir)
                jobs[name] = {"id": job_id, "bundle": bundle,
                              "x_test": _test_inputs(bundle.spec)}
    finally:
        engine.dispose()
    return jobs


def _test_inputs(spec: dict) -> np.ndarray:
    """The raw inputs of the test split the job was evaluated on."""
    ds = DatasetSpec.model_validate(spec["dataset"])
    stored = datasets.source_arrays(ds.name, ds.options(), None, None)
    task = datasets.describe(ds.name, ds.options()).task
    arrays = datasets.job_arrays(stored, task, ds.val_fraction, ds.seed, ds.n_train)
    x = arrays.x_test if arrays.test_rows is None else arrays.x_test[arrays.test_rows]
    return np.ascontiguousarray(x, dtype=np.float32)


def _download(api_url: str, job_id: str, fmt: str, **params) -> httpx.Response:
    response = httpx.get(f"{api_url}/v1/jobs/{job_id}/export",
                         params={"format": fmt, **params}, timeout=120)
    assert response.status_code == 200, response.text
    return response


def _reference(job: dict) -> np.ndarray:
    return job["bundle"](torch.from_numpy(job["x_test"])).numpy()


def _assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, what
    assert np.abs(got - expected).max() <= TOLERANCE, what
    assert (got.argmax(1) == expected.argmax(1)).all(), what


def test_onnx_runs_in_onnxruntime(trained, api_url: str, tmp_path: Path) -> None:
    for name, job in trained.items():
        response = _download(api_url, job["id"], "onnx")
        assert int(response.headers["x-traindock-step"]) == job["bundle"].step
        assert response.headers["content-disposition"].endswith('.onnx"')
        session = onnxruntime.InferenceSession(response.content)
        (inp,) = session.get_inputs()
        assert inp.name == "input" and inp.shape[1:] == list(job["bundle"].input_shape)
        assert not isinstance(inp.shape[0], int), f"{name}: the batch dimension is fixed"
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["class_names"]) == job["bundle"].class_names
        assert json.loads(meta["input_shape"])[1:] == list(job["bundle"].input_shape)
        assert meta["task"] == "classification"
        assert meta["traindock.job_id"] == job["id"]
        (out,) = session.run(None, {"input": job["x_test"]})
        _assert_same(out, _reference(job), f"{name} (onnx)")
        (one,) = session.run(None, {"input": job["x_test"][:1]})  # another batch size
        _assert_same(one, _reference(job)[:1], f"{name} (onnx, one row)")


def test_pt2_runs_in_a_fresh_interpreter_without_traindock(trained, api_url: str,
                                                           tmp_path: Path) -> None:
    cases = []
    for name, job in trained.items():
        pt2, x = tmp_path / f"{name}.pt2", tmp_path / f"{name}-x.npy"
        pt2.write_bytes(_download(api_url, job["id"], "pt2").content)
        np.save(x, job["x_test"])
        cases.append({"pt2": str(pt2), "x": str(x), "out": str(tmp_path / f"{name}-out.npy")})
    site = str(Path(torch.__file__).resolve().parent.parent)
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FRESH_RUN, site, json.dumps(cases)],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    names = [json.loads(line) for line in run.stdout.splitlines()]
    for (name, job), case, class_names in zip(trained.items(), cases, names, strict=True):
        assert class_names == job["bundle"].class_names
        _assert_same(np.load(case["out"]), _reference(job), f"{name} (pt2)")


def test_safetensors_zip_holds_the_weights_and_the_card(trained, api_url: str) -> None:
    job = trained["batchnorm"]
    response = _download(api_url, job["id"], "safetensors", checkpoint="last")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["model.json", "model.safetensors"]
        card = json.loads(archive.read("model.json"))
        tensors = load_safetensors(archive.read("model.safetensors"))
    assert card["class_names"] == [str(i) for i in range(10)]
    assert card["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32",
                             "raw": True}
    assert card["preprocessing"]["kind"] == "standardize"
    assert card["spec"]["model"]["layers"][1]["type"] == "batchnorm"
    state = job["bundle"].module.state_dict()
    assert set(tensors) == set(state)
    for key, value in state.items():
        assert torch.equal(tensors[key], value), key  # batchnorm's running statistics too


def test_export_errors_name_what_to_change(trained, api_url: str) -> None:
    job_id = trained["mlp"]["id"]
    bad_format = httpx.get(f"{api_url}/v1/jobs/{job_id}/export", params={"format": "tflite"})
    assert bad_format.status_code == 422 and "format" in bad_format.text
    bad_choice = httpx.get(f"{api_url}/v1/jobs/{job_id}/export",
                           params={"format": "onnx", "checkpoint": "newest"})
    assert bad_choice.status_code == 422
    assert bad_choice.json()["detail"][0]["field"] == "checkpoint"
    no_step = httpx.get(f"{api_url}/v1/jobs/{job_id}/export",
                        params={"format": "onnx", "checkpoint": "999999"})
    assert no_step.status_code == 404 and "steps" in no_step.json()["detail"]
    missing = httpx.get(f"{api_url}/v1/jobs/00000000-0000-0000-0000-000000000000/export",
                        params={"format": "onnx"})
    assert missing.status_code == 404


def test_python_client_and_cli_save_checked_files(trained, api_url: str,
                                                  tmp_path: Path) -> None:
    from traindock import Client

    job = trained["cnn"]
    with Client(api_url) as td:
        path = td.export(job["id"][:8], "onnx", path=f"{tmp_path}/models/")
    assert path.parent == tmp_path / "models" and path.name.endswith(".onnx")
    session = onnxruntime.InferenceSession(str(path))
    (out,) = session.run(None, {"input": job["x_test"][:5]})
    _assert_same(out, _reference(job)[:5], "cnn (client)")

    target = tmp_path / "cnn.safetensors.zip"
    cli = [sys.executable, "-m", "cli.main", "export", job["id"], "--format", "safetensors",
           "--checkpoint", str(job["bundle"].step), "-o", str(target), "--url", api_url]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(target) and zipfile.is_zipfile(target)
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "--force" in again.stderr


def test_a_job_without_a_checkpoint_is_a_409_saying_what_to_wait_for(trained, api_url: str
                                                                     ) -> None:
    spec = {"name": "export-early", "dataset": {"name": "digits"},
            "model": {"layers": JOBS["mlp"][1]},
            "training": {"epochs": 500, "checkpoint_every_epochs": 0}}
    with httpx.Client(base_url=api_url, timeout=30) as client:
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        try:
            response = client.get(f"/v1/jobs/{job_id}/export", params={"format": "onnx"})
            assert response.status_code == 409, response.text
            (problem,) = response.json()["detail"]
            assert problem["field"] == "checkpoint" and "wait for" in problem["message"]
        finally:
            client.post(f"/v1/jobs/{job_id}/cancel")
            wait_for_state(client, job_id, {"cancelled", "succeeded", "failed"}, 60)


def test_another_owners_job_is_a_404(trained, auth_api_url: str, settings) -> None:
    from tests.conftest import make_api_key

    token = make_api_key(settings, "read", owner="export-stranger")
    response = httpx.get(f"{auth_api_url}/v1/jobs/{trained['mlp']['id']}/export",
                         params={"format": "onnx"},
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404, response.text


def test_an_uploaded_csv_gives_its_class_names_from_the_row_or_the_stored_folder(
        api_url: str, settings) -> None:
    csv = "width,height,kind\n" + "".join(
        f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}\n" for i in range(40))
    name = f"export-pets-{uuid.uuid4().hex[:8]}"
    response = httpx.post(f"{api_url}/v1/datasets", data={"name": name},
                          files={"file": ("pets.csv", csv.encode())}, timeout=60)
    assert response.status_code == 201, response.text
    row = response.json()
    spec = {"dataset": {"name": name, "id": row["id"], "sha256": row["sha256"]}}
    engine = make_engine(settings, pool_size=1)
    try:
        with Session(engine) as session:
            info = dataset_info(session, spec, settings.dataset_dir)
            assert class_names_of(info) == ["cat", "dog"] and info.input_shape == (2,)
            # The row gone (or holding another version): the version's own folder answers.
            other = {"dataset": {**spec["dataset"], "id": str(uuid.uuid4())}}
            stored = dataset_info(session, other, settings.dataset_dir)
            assert class_names_of(stored) == ["cat", "dog"]
            gone = {"dataset": {**spec["dataset"], "id": None, "sha256": "0" * 64}}
            with pytest.raises(FileGone):
                dataset_info(session, gone, settings.dataset_dir)
    finally:
        engine.dispose()


def test_the_python_examples_of_docs_models_md_run(trained, api_url: str, tmp_path: Path,
                                                   monkeypatch) -> None:
    """docs/models.md's plain PyTorch, safetensors and onnxruntime blocks, run as written on
    the digits MLP's exports saved under the names the page uses."""
    job = trained["mlp"]
    for fmt, suffix in (("onnx", ".onnx"), ("pt2", ".pt2"),
                        ("safetensors", ".safetensors.zip")):
        content = _download(api_url, job["id"], fmt).content
        (tmp_path / f"digits-mlp-7a8cfae4-step-630{suffix}").write_bytes(content)
    page = (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split("```python\n")[1:]]
    runnable = [b for b in blocks if "digits-mlp-7a8cfae4-step-630" in b]
    assert len(runnable) == 3
    monkeypatch.chdir(tmp_path)
    for block in runnable:
        scope: dict = {}
        exec(compile(block, "docs/models.md", "exec"), scope)
    assert scope["class_names"] == job["bundle"].class_names  # the onnxruntime block's
