"""Every upload format end to end: a file built here is uploaded over HTTP, described, and a
job on it trains through the worker to a sensible accuracy. And every kind of bad file is
refused over HTTP with a 4xx that names the problem, leaving no file and no row behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.settings import Settings
from tests.conftest import wait_for_state
from tests.test_upload_formats import (
    idx_bytes,
    npy_bytes,
    png_bytes,
    write_csv,
    write_npz,
    write_zip,
)

RNG = np.random.default_rng(7)
CLASSES = 3


def _blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % CLASSES
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    return (centres[y] + RNG.normal(0, 0.6, (n, 2))).astype(np.float32), y.astype(np.int64)


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """8×8 grey images: class k has a bright band at rows 2k..2k+1, over noise."""
    y = np.arange(n) % CLASSES
    x = RNG.integers(0, 60, (n, 8, 8)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 2 * k:2 * k + 2, :] = 220
    return x, y.astype(np.uint8)


def npz_file(tmp: Path) -> tuple[Path, dict]:
    x, y = _blobs(300)
    return write_npz(tmp / "blobs.npz", x_train=x, y_train=y), {}


def csv_file(tmp: Path) -> tuple[Path, dict]:
    x, y = _blobs(300)
    names = ["north", "east", "west"]
    rows = [["u", "v", "where"]] + [[f"{a:.4f}", f"{b:.4f}", names[k]]
                                    for (a, b), k in zip(x, y, strict=True)]
    return write_csv(tmp / "blobs.csv", rows), {"target": "where"}


def idx_file(tmp: Path) -> tuple[Path, dict]:
    x, y = _images(300)
    xt, yt = _images(90)
    return write_zip(tmp / "bands.zip", {
        "train-images-idx3-ubyte": idx_bytes(x), "train-labels-idx1-ubyte": idx_bytes(y),
        "t10k-images-idx3-ubyte": idx_bytes(xt), "t10k-labels-idx1-ubyte": idx_bytes(yt),
    }), {}


def images_file(tmp: Path) -> tuple[Path, dict]:
    x, y = _images(150)
    members = {f"bands/class{k}/{i}.png": png_bytes(image)
               for i, (image, k) in enumerate(zip(x, y, strict=True))}
    return write_zip(tmp / "bands-images.zip", members), {"color": "grayscale"}


FORMATS = {"npz": npz_file, "csv": csv_file, "idx": idx_file, "images": images_file}


def upload(http: httpx.Client, path: Path, name: str, **fields: str) -> httpx.Response:
    return http.post("/v1/datasets", files={"file": (path.name, path.read_bytes())},
                     data={"name": name, **fields})


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_upload_describes_itself_and_a_job_trains_on_it(fmt: str, client, worker,
                                                           tmp_path: Path) -> None:
    path, fields = FORMATS[fmt](tmp_path)
    name = f"roundtrip-{fmt}-{uuid.uuid4().hex[:6]}"
    created = upload(client, path, name, **fields)
    assert created.status_code == 201, created.text
    described = client.get(f"/v1/datasets/{name}").json()
    assert described == created.json()
    assert (described["format"], described["task"], described["num_classes"]) == (
        fmt, "classification", CLASSES)

    spec = {"name": name, "dataset": {"name": name},
            "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
                                 {"type": "relu"}, {"type": "linear", "out_features": CLASSES}]},
            "optimizer": {"type": "adam", "lr": 0.01},
            "training": {"epochs": 15, "batch_size": 32, "checkpoint_every_epochs": 0}}
    job = client.post("/v1/jobs", json=spec)
    assert job.status_code == 201, job.text
    done = wait_for_state(client, job.json()["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["error"]
    assert done["spec"]["dataset"]["sha256"] == described["sha256"]
    assert done["summary"]["test"]["test_accuracy"] >= 0.9, done["summary"]


# ---- refusals over HTTP -------------------------------------------------------------------


def _pickled(tmp: Path) -> Path:
    objects = np.array([{"a": 1}, None], dtype=object)
    return write_zip(tmp / "pickled.npz", {"x_train.npy": npy_bytes(objects),
                                           "y_train.npy": npy_bytes(np.zeros(2, np.int64))})


def _escaping(tmp: Path) -> Path:
    return write_zip(tmp / "escape.zip", {"../cls/a.png": png_bytes(np.zeros((4, 4), np.uint8))})


def _truncated(tmp: Path) -> Path:
    x = np.zeros((10, 2), np.float32)
    return write_zip(tmp / "short.npz", {"x_train.npy": npy_bytes(x, shape=(1000, 2)),
                                         "y_train.npy": npy_bytes(np.zeros(10, np.int64))})


def _bad_csv(tmp: Path) -> Path:
    return write_csv(tmp / "words.csv", [["a", "y"], ["1.0", "0"], ["ten", "1"], ["2.0", "0"]])


def _lengths(tmp: Path) -> Path:
    return write_npz(tmp / "lengths.npz", x_train=np.zeros((5, 2), np.float32),
                     y_train=np.zeros(4, np.int64))


def _not_an_image(tmp: Path) -> Path:
    return write_zip(tmp / "broken.zip", {"cls_a/one.png": b"not a png at all",
                                          "cls_b/two.png": png_bytes(np.zeros((4, 4), np.uint8))})


@pytest.mark.parametrize(("make", "field", "phrase"), [
    (_pickled, "file: x_train", "pickled objects are not accepted"),
    (_escaping, "file", ".."),
    (_truncated, "file: x_train", "truncated"),
    (_bad_csv, "file", "ten"),
    (_lengths, "file", "5"),
    (_not_an_image, "file", "one.png"),
], ids=["pickled", "escaping-path", "truncated-header", "non-numeric-csv", "length-mismatch",
        "undecodable-image"])
def test_a_bad_file_is_refused_and_leaves_nothing(make, field: str, phrase: str, client,
                                                  settings: Settings, tmp_path: Path) -> None:
    before_files = sorted(p.name for p in settings.dataset_dir.glob("*"))
    before_rows = {d["id"] for d in client.get("/v1/datasets").json() if not d["builtin"]}
    response = upload(client, make(tmp_path), f"bad-{uuid.uuid4().hex[:6]}")
    assert 400 <= response.status_code < 500, response.text
    problem = response.json()["detail"][0]
    assert problem["field"].startswith(field), problem
    assert phrase in problem["message"], problem
    assert sorted(p.name for p in settings.dataset_dir.glob("*")) == before_files
    after_rows = {d["id"] for d in client.get("/v1/datasets").json() if not d["builtin"]}
    assert after_rows == before_rows
    uploads = settings.data_dir / "uploads"  # where the body was received
    assert uploads.is_dir() and not any(uploads.iterdir()), list(uploads.iterdir())
