"""Uploads that are small on the wire and huge once parsed (issue 15's probe, each file built
here small and expanding large) end in a 413 or 422 within seconds, the API process's
resident memory grows by less than 200 MB (measured with psutil on the real API process), and
nothing stays on disk. Parsing runs in a bounded child process: a memory limit hit there is a
413 naming TRAINDOCK_INGEST_MEMORY_MB, the wall deadline a 422 naming
TRAINDOCK_INGEST_DEADLINE_S, and a client that hangs up has its child killed."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
import struct
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from api.bounded_ingest import child_request, parse_in_child
from core.settings import Settings
from core.uploads.parsed import UploadError
from tests.conftest import start_api

MiB = 1 << 20
PARSED_CAP = 64 * MiB
RSS_GROWTH_LIMIT = 200 * MiB
DEADLINE_S = 4
MEASURED: list[str] = []  # printed at the end (pytest -s): the numbers for the report


@pytest.fixture(scope="module")
def bounded_api(service_env, tmp_path_factory) -> Iterator[tuple[str, psutil.Process]]:
    """An API of its own, so that its memory is this module's alone to measure."""
    service, url = start_api(service_env, tmp_path_factory.mktemp("api-bounds"),
                             TRAINDOCK_MAX_PARSED_BYTES=str(PARSED_CAP),
                             TRAINDOCK_INGEST_MEMORY_MB="1024",
                             TRAINDOCK_INGEST_DEADLINE_S=str(DEADLINE_S))
    yield url, psutil.Process(service.proc.pid)
    service.stop()
    print("\n" + "\n".join(MEASURED))


def leftovers(data_dir: Path) -> set[str]:
    """Every entry (files and folders) under DATA_DIR/datasets and DATA_DIR/uploads."""
    return {str(p.relative_to(data_dir)) for sub in ("datasets", "uploads")
            for p in (data_dir / sub).rglob("*")}


def _refused(bounded_api, settings, label: str, files: dict, data: dict, statuses=(413, 422),
             within_s: float = 20.0) -> dict:
    url, api = bounded_api
    before_files = leftovers(settings.data_dir)
    before = api.memory_info().rss
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        response = http.post("/v1/datasets", files=files,
                             data={"name": f"bound-{uuid.uuid4().hex[:8]}"} | data)
    took = time.monotonic() - started
    after = api.memory_info().rss
    MEASURED.append(f"{label}: {response.status_code} in {took:.1f} s; API RSS "
                    f"{before / MiB:.0f} -> {after / MiB:.0f} MiB")
    assert response.status_code in statuses, response.text
    assert took < within_s
    assert after - before < RSS_GROWTH_LIMIT
    assert leftovers(settings.data_dir) == before_files
    (detail,) = response.json()["detail"]
    return detail


def _png(width: int, height: int, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _npy(shape: tuple[int, ...], dtype: str) -> bytes:
    """An .npy of zeros, written a block at a time (the test never holds it whole)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(dtype).str,
                                               "fortran_order": False, "shape": shape})
    out.write(bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize))
    return out.getvalue()


def _gzip_repeated(head: bytes, unit: bytes, total: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as packed:
        packed.write(head)
        block = unit * (MiB // len(unit))
        for _ in range(total // len(block)):
            packed.write(block)
    return out.getvalue()


def test_two_huge_pngs_in_a_small_zip_are_refused(bounded_api, settings):
    archive = _zip({"a/one.png": _png(9000, 9000), "b/two.png": _png(9000, 9000)})
    assert len(archive) < 1 * MiB
    detail = _refused(bounded_api, settings, f"2 PNGs 9000x9000 ({len(archive) // 1024} KB zip)",
                      {"file": ("big.zip", archive)}, {"format": "images"}, within_s=30)
    assert "TRAINDOCK_" in detail["message"]


def test_tiny_images_resized_huge_are_refused_before_decoding(bounded_api, settings):
    archive = _zip({f"{c}/{i}.png": _png(2, 2) for c in "ab" for i in range(4)})
    detail = _refused(bounded_api, settings, f"8 PNGs ({len(archive)} B) at image_size=4096",
                      {"file": ("tiny.zip", archive)}, {"format": "images", "image_size": "4096"},
                      within_s=10)
    assert detail["field"] == "image_size" and "TRAINDOCK_MAX_PARSED_BYTES" in detail["message"]


def test_an_npz_declaring_a_wide_array_is_refused_from_its_header(bounded_api, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", _npy((2, 20_000_000), "<f4"))
        archive.writestr("y_train.npy", _npy((2,), "<i8"))
    detail = _refused(bounded_api, settings, f"npz x (2, 2e7) ({len(buffer.getvalue()) // 1024} "
                      "KB)", {"file": ("wide.npz", buffer.getvalue())}, {}, within_s=10)
    assert "x_train" in detail["message"] and detail["message"].count("TRAINDOCK_MAX_PARSED")


def test_npz_labels_are_sized_before_they_are_widened(bounded_api, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", _npy((2, 1), "<f4"))
        archive.writestr("y_train.npy", _npy((40_000_000,), "|u1"))
    detail = _refused(bounded_api, settings, "npz y (4e7,) uint8",
                      {"file": ("labels.npz", buffer.getvalue())}, {}, within_s=10)
    assert "y_train" in detail["message"] and "8-byte" in detail["message"]


def test_a_wide_categorical_target_in_a_small_csv_gz_is_refused(bounded_api, settings):
    row = b"1,2," + b"c" * 100_000 + b"\n"
    body = _gzip_repeated(b"a,b,y\n", row, 48 * MiB)  # under the gzip ratio cap
    detail = _refused(bounded_api, settings, f"csv.gz wide target ({len(body) // 1024} KB)",
                      {"file": ("wide.csv.gz", body)}, {}, within_s=10)
    assert detail["field"] == "target" and "256" in detail["message"]


def test_a_gzip_bomb_of_newlines_is_refused_within_seconds(bounded_api, settings):
    body = _gzip_repeated(b"a,y\n", b"\n", 512 * MiB)
    detail = _refused(bounded_api, settings, f"csv.gz of newlines ({len(body) // 1024} KB)",
                      {"file": ("bomb.csv.gz", body)}, {}, within_s=15)
    assert "compressed size" in detail["message"]


def test_a_long_row_csv_is_refused_by_rows_times_columns(bounded_api, settings):
    columns = 60_000
    header = ",".join(f"c{i}" for i in range(columns)).encode() + b",y\n"
    body = _gzip_repeated(header, b"0," * columns + b"1\n", 40 * MiB)
    detail = _refused(bounded_api, settings, f"csv.gz 60001 columns ({len(body) // 1024} KB)",
                      {"file": ("long.csv.gz", body)}, {}, within_s=20)
    assert "TRAINDOCK_MAX_PARSED_BYTES" in detail["message"]


def test_idx_dims_are_sized_from_the_header(bounded_api, settings):
    dims = (8192, 64, 64)
    images = gzip.compress(struct.pack(">BBBB3I", 0, 0, 8, 3, *dims) + bytes(np.prod(dims)))
    labels = gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, dims[0]) + bytes(dims[0]))
    archive = _zip({"train-images-idx3-ubyte.gz": images, "train-labels-idx1-ubyte.gz": labels})
    detail = _refused(bounded_api, settings, f"IDX dims {dims} ({len(archive) // 1024} KB)",
                      {"file": ("mnist.zip", archive)}, {}, within_s=10)
    assert "TRAINDOCK_MAX_PARSED_BYTES" in detail["message"]


def _slow_csv() -> bytes:
    """Millions of rows with a categorical target: only the csv module's path reads it,
    which takes far longer than DEADLINE_S."""
    return _gzip_repeated(b"a,b,y\n", b"1,2,cat\n1,3,dog\n", 24 * MiB)


def test_a_parse_past_the_deadline_is_a_422_naming_the_setting(bounded_api, settings):
    detail = _refused(bounded_api, settings, "slow csv past the deadline",
                      {"file": ("slow.csv.gz", _slow_csv())}, {}, statuses=(422,),
                      within_s=DEADLINE_S + 10)
    assert "TRAINDOCK_INGEST_DEADLINE_S" in detail["message"]


def _children(api: psutil.Process) -> list[psutil.Process]:
    return [p for p in api.children(recursive=True)
            if "core.uploads.ingest_child" in " ".join(p.cmdline())]


def test_a_client_that_hangs_up_has_its_parsing_child_killed(bounded_api, settings):
    url, api = bounded_api
    before_files = leftovers(settings.data_dir)
    boundary = "traindockboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n"
            f"gone-{uuid.uuid4().hex[:8]}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"slow.csv.gz\"\r\n\r\n").encode() + _slow_csv() + (
            f"\r\n--{boundary}--\r\n").encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall((f"POST /v1/datasets HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                      f"multipart/form-data; boundary={boundary}\r\nContent-Length: "
                      f"{len(body)}\r\n\r\n").encode() + body)
        deadline = time.monotonic() + DEADLINE_S
        while not _children(api):
            assert time.monotonic() < deadline, "no parsing child started"
            time.sleep(0.05)
        children = _children(api)
    gone_at = time.monotonic()
    _, alive = psutil.wait_procs(children, timeout=3)
    assert not alive, "the parsing child outlived its client"
    MEASURED.append(f"hang-up: parsing child gone {time.monotonic() - gone_at:.1f} s after")
    deadline = time.monotonic() + 5
    while leftovers(settings.data_dir) != before_files and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(settings.data_dir) == before_files


def test_a_child_over_its_memory_limit_is_a_413_naming_the_setting(settings, tmp_path):
    """Straight through the child runner: images that pass every declared-size check but
    need more memory to decode than the child may have."""
    limited = Settings(**(settings.model_dump() | {"ingest_memory_mb": 400}))
    path = tmp_path / "big.zip"
    path.write_bytes(_zip({"a/one.png": _png(5000, 5000, "RGB"),
                           "b/two.png": _png(5000, 5000, "RGB")}))
    work = tmp_path / "work"
    work.mkdir()
    request = child_request(limited, path, "big.zip", {"format": "images"}, work,
                            tmp_path / "tmp")
    with pytest.raises(UploadError) as refused:
        asyncio.run(parse_in_child(limited, request))
    assert refused.value.status == 413
    assert "TRAINDOCK_INGEST_MEMORY_MB" in refused.value.message
    assert not (tmp_path / "tmp").exists()


def test_a_child_past_its_cpu_limit_is_a_422_naming_the_setting(settings, tmp_path):
    limited = Settings(**(settings.model_dump() | {"ingest_cpu_s": 1}))
    path = tmp_path / "slow.csv.gz"
    path.write_bytes(_slow_csv())
    work = tmp_path / "work"
    work.mkdir()
    request = child_request(limited, path, "slow.csv.gz", {}, work, tmp_path / "tmp")
    started = time.monotonic()
    with pytest.raises(UploadError) as refused:
        asyncio.run(parse_in_child(limited, request))
    assert refused.value.status == 422 and "TRAINDOCK_INGEST_CPU_S" in refused.value.message
    assert time.monotonic() - started < 30


def test_a_small_upload_still_round_trips_through_the_child(bounded_api, settings):
    url, _ = bounded_api
    csv = b"a,b,y\n1,2,cat\n3,4,dog\n5,6,cat\n"
    with httpx.Client(base_url=url, timeout=60) as http:
        response = http.post("/v1/datasets", files={"file": ("ok.csv", csv)},
                             data={"name": f"bound-ok-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["class_names"] == ["cat", "dog"] and body["feature_stats"]["features"] == 2
    assert body["feature_stats"]["per_feature"]["mean"] == [3.0, 4.0]


def test_the_summary_streams_with_memory_independent_of_the_feature_count():
    """feature_stats over 2 x 8M features: the same numbers as numpy computes directly, for
    a few MiB of peak memory where per-feature state would cost 8M x 64 bytes."""
    import tracemalloc

    from core.dataset_summary import feature_stats

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(2, 8_000_000)).astype(np.float32)
    tracemalloc.start()
    try:
        stats = feature_stats(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wide = x.astype(np.float64)
    assert stats["features"] == 8_000_000 and stats["per_feature"] is None
    assert stats["mean"] == pytest.approx(wide.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(wide.std(), rel=1e-9)
    assert (stats["min"], stats["max"]) == (float(x.min()), float(x.max()))
    MEASURED.append(f"feature_stats on 2 x 8M features: peak {peak / MiB:.1f} MiB")
    assert peak < 32 * MiB
    narrow = rng.normal(size=(1000, 5)).astype(np.float32)
    small = feature_stats(narrow)["per_feature"]
    np.testing.assert_allclose(small["mean"], narrow.astype(np.float64).mean(0), atol=1e-6)
    np.testing.assert_allclose(small["std"], narrow.astype(np.float64).std(0), atol=1e-6)
