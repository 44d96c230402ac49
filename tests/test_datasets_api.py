"""/v1/datasets over real HTTP against a real API and PostgreSQL: uploads and URL imports
round-trip to the stored arrays; bad input is a 4xx naming the problem and leaves no file or
row behind; the body cap holds whatever Content-Length says; deleting refuses while a job
uses the dataset; and a 1 GiB upload keeps the API's resident memory small."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest

from api.main import create_app
from core.dataset_store import load_arrays
from core.settings import Settings
from tests.conftest import free_port, load_example, start_api

SMALL_CAP = 200_000


# --- helpers ------------------------------------------------------------------------------------


def _name(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def toy_arrays(n: int = 120, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(n, 3)).astype(np.float32),
            "y_train": (np.arange(n) % 3).astype(np.int64),
            "x_test": rng.normal(size=(30, 3)).astype(np.float32),
            "y_test": (np.arange(30) % 3).astype(np.int64)}


def upload(http: httpx.Client, name: str | None, content: bytes, filename: str = "data.npz",
           **fields: str) -> httpx.Response:
    data = ({"name": name} if name is not None else {}) | fields
    return http.post("/v1/datasets", files={"file": (filename, content)}, data=data)


def stored_files(data_dir: Path) -> set[str]:
    """Everything under DATA_DIR/datasets and DATA_DIR/uploads (temporary bodies)."""
    return {str(p.relative_to(data_dir)) for sub in ("datasets", "uploads")
            for p in (data_dir / sub).rglob("*") if p.is_file()}


def dataset_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM dataset").fetchone()[0]


@pytest.fixture
def nothing_left(settings) -> Iterator[None]:
    """The test's refusals must leave no file and no row behind."""
    files, rows = stored_files(settings.data_dir), dataset_rows(settings.database_url)
    yield
    assert stored_files(settings.data_dir) == files
    assert dataset_rows(settings.database_url) == rows


@pytest.fixture(scope="module")
def small_cap_url(service_env, tmp_path_factory) -> Iterator[str]:
    service, url = start_api(service_env, tmp_path_factory.mktemp("api-small"),
                             TRAINDOCK_MAX_UPLOAD_BYTES=str(SMALL_CAP))
    yield url
    service.stop()


class FileServer:
    """A local HTTP server in a thread: GET /<name> answers the bytes registered under it;
    /endless sends zeros until the client hangs up; anything else is a 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/").split("?")[0]
                if name == "endless.npz":  # no Content-Length: only counting can stop it
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(10_000):
                            self.wfile.write(b"\0" * 65536)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                body = files.get(name)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()


# --- uploads ------------------------------------------------------------------------------------


def test_an_npz_upload_round_trips(client, settings):
    arrays = toy_arrays()
    name = _name("npz")
    response = upload(client, name, npz_bytes(**arrays))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == name and body["builtin"] is False
    assert (body["format"], body["task"], body["input_shape"], body["target_shape"],
            body["num_classes"]) == ("npz", "classification", [3], [], 3)
    assert body["splits"] == {"train": 120, "val": None, "test": 30}
    assert body["class_counts"] == {"train": [40, 40, 40], "test": [10, 10, 10]}
    assert body["source"] == {"filename": "data.npz"}
    stats = body["feature_stats"]
    x = arrays["x_train"].astype(np.float64)
    assert stats["features"] == 3
    np.testing.assert_allclose(stats["per_feature"]["mean"], x.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(stats["per_feature"]["std"], x.std(axis=0), atol=1e-5)
    assert stats["min"] == pytest.approx(x.min()) and stats["std"] == pytest.approx(x.std())

    assert client.get(f"/v1/datasets/{body['id']}").json() == body
    assert client.get(f"/v1/datasets/{name}").json() == body
    listed = client.get("/v1/datasets").json()
    assert body in listed
    assert {"digits", "moons"} <= {d["name"] for d in listed if d["builtin"]}

    stored = load_arrays(settings.dataset_dir, body["sha256"], mmap=False)
    assert sorted(stored) == sorted(arrays)
    for key, array in arrays.items():
        np.testing.assert_array_equal(stored[key], array)
        assert stored[key].dtype == array.dtype
    folder = settings.dataset_dir / body["sha256"]
    assert body["bytes"] == sum(f.stat().st_size for f in folder.iterdir())


def test_a_csv_upload_maps_a_categorical_target(client, settings):
    rows = ["height,weight,kind"] + [f"{i % 7}.5,{i * 0.1:.1f},{['cat', 'ant', 'bee'][i % 3]}"
                                     for i in range(30)]
    response = upload(client, _name("csv"), "\n".join(rows).encode(), "animals.csv",
                      target="kind")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["task"], body["input_shape"]) == ("csv", "classification", [2])
    assert body["class_names"] == ["ant", "bee", "cat"]
    assert body["class_counts"] == {"train": [10, 10, 10]}
    stored = load_arrays(settings.dataset_dir, body["sha256"], mmap=True)
    expected = [["ant", "bee", "cat"].index(["cat", "ant", "bee"][i % 3]) for i in range(30)]
    np.testing.assert_array_equal(stored["y_train"], expected)
    np.testing.assert_allclose(stored["x_train"][:, 1], [i * 0.1 for i in range(30)], atol=1e-6)


def test_the_same_content_twice_is_stored_once(client, settings):
    content = npz_bytes(**toy_arrays(seed=5))
    first = upload(client, _name("twice"), content).json()
    second = upload(client, _name("twice"), content, "copy.npz").json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert sorted(p.name for p in settings.dataset_dir.iterdir()).count(first["sha256"]) == 1

    # Deleting one keeps the folder the other still names; deleting both removes it.
    folder = settings.dataset_dir / first["sha256"]
    assert client.delete(f"/v1/datasets/{first['id']}").status_code == 204
    assert folder.is_dir()
    assert client.get(f"/v1/datasets/{first['id']}").status_code == 404
    assert client.delete(f"/v1/datasets/{second['name']}").status_code == 204
    assert not folder.exists()
    assert client.delete(f"/v1/datasets/{second['id']}").status_code == 404


def test_a_taken_or_built_in_name_is_refused(client, nothing_left):
    name = _name("taken")
    first = upload(client, name, npz_bytes(**toy_arrays(seed=9)))
    assert first.status_code == 201
    content = npz_bytes(**toy_arrays(seed=10))
    for taken in (name, "digits"):
        response = upload(client, taken, content)
        assert response.status_code == 409, response.text
        (detail,) = response.json()["detail"]
        assert detail["field"] == "name" and taken in detail["message"]
    assert client.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.array([{"a": 1}, {"b": 2}], dtype=object),
             y_train=np.array([0, 1]))
    return buffer.getvalue()


BAD_UPLOADS = {
    "pickled": (_pickled_npz(), "data.npz", {}, "file: x_train", "pickled"),
    "lengths": (npz_bytes(x_train=np.zeros((10, 2), np.float32), y_train=np.arange(9) % 2),
                "data.npz", {}, "file: train", "must match"),
    "nan": (npz_bytes(x_train=np.full((4, 2), np.nan, np.float32), y_train=np.arange(4) % 2),
            "data.npz", {}, "file: x_train", "NaN"),
    "labels": (npz_bytes(x_train=np.zeros((4, 2), np.float32), y_train=np.array([0, 1, -1, 1])),
               "data.npz", {}, "file: y_train", "negative"),
    "not a zip": (b"hello, this is not an npz", "data.npz", {}, "file", "zip"),
    "suffix": (b"1,2,3\n", "data.xlsx", {}, "file", "format"),
    "text feature": (b"a,b,y\n1,x,0\n2,3,1\n4,5,0\n", "t.csv", {}, "file", "not numeric"),
    "unknown format": (b"a,y\n1,0\n", "t.csv", {"format": "parquet"}, "format", "parquet"),
    "unknown field": (b"a,y\n1,0\n", "t.csv", {"colour": "rgb"}, "colour", "unknown field"),
    "bad name": (b"a,y\n1,0\n", "t.csv", {"name": "../etc"}, "name", "pattern"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_bad_upload_is_a_4xx_naming_the_problem_and_leaves_nothing(client, case,
                                                                     nothing_left):
    content, filename, fields, field, words = BAD_UPLOADS[case]
    fields = dict(fields)
    name = fields.pop("name", _name("bad"))
    response = upload(client, name, content, filename, **fields)
    assert 400 <= response.status_code < 500, response.text
    details = response.json()["detail"]
    assert any(d["field"] == field and words.lower() in d["message"].lower()
               for d in details), details


def test_an_upload_without_file_or_name_is_422(client, nothing_left):
    no_name = upload(client, None, npz_bytes(**toy_arrays()))
    assert no_name.status_code == 422
    assert [d["field"] for d in no_name.json()["detail"]] == ["name"]
    no_file = client.post("/v1/datasets", data={"name": _name()},
                          files={"other": ("x.npz", b"..")})
    assert no_file.status_code == 422
    assert no_file.json()["detail"][0]["field"] in ("file", "other")
    cut = client.post("/v1/datasets", content=b"--xyz\r\nContent-Disposition: form-data; "
                      b'name="file"; filename="a.npz"\r\n\r\nPK...',
                      headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert cut.status_code == 422 and "cut off" in cut.json()["detail"][0]["message"]


def test_a_row_that_cannot_be_inserted_takes_its_new_folder_with_it(client, settings,
                                                                  monkeypatch, tmp_path):
    """The name check passes, then another upload takes the name before the insert: the
    folder this upload stored goes, the one another row names stays."""
    from sqlalchemy.orm import Session

    from api import dataset_ingest
    from api.dataset_schemas import UploadOptions
    from core.db import make_engine
    from core.uploads.parsed import UploadError

    name = _name("race")
    shared = npz_bytes(**toy_arrays(seed=41))
    first = upload(client, name, shared).json()
    monkeypatch.setattr(dataset_ingest, "check_name_free", lambda session, name, owner: None)
    engine = make_engine(settings)
    try:
        for content in (npz_bytes(**toy_arrays(seed=42)), shared):
            before = sorted(p.name for p in settings.dataset_dir.iterdir())
            path = tmp_path / "upload.npz"
            path.write_bytes(content)
            with Session(engine) as session, pytest.raises(UploadError) as refused:
                dataset_ingest.ingest(session, settings, path, "upload.npz",
                                      UploadOptions(name=name), {"filename": "upload.npz"},
                                      "local")
            assert (refused.value.status, refused.value.field) == (409, "name")
            assert sorted(p.name for p in settings.dataset_dir.iterdir()) == before
    finally:
        engine.dispose()
    assert (settings.dataset_dir / first["sha256"]).is_dir()
    assert client.delete(f"/v1/datasets/{first['id']}").status_code == 204


def test_a_body_over_the_cap_is_413_whatever_its_content_length_says(small_cap_url, settings,
                                                                     nothing_left):
    big = npz_bytes(x_train=np.zeros((SMALL_CAP // 8, 2), np.float32),
                    y_train=np.arange(SMALL_CAP // 8) % 2)
    assert len(big) > SMALL_CAP
    with httpx.Client(base_url=small_cap_url, timeout=30) as http:
        declared = upload(http, _name("big"), big)
        assert declared.status_code == 413, declared.text
        assert "TRAINDOCK_MAX_UPLOAD_BYTES" in declared.json()["detail"][0]["message"]

        def chunks() -> Iterator[bytes]:  # chunked: no Content-Length at all
            boundary = b"b0undary"
            yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
                   + b"chunky\r\n--" + boundary + b'\r\nContent-Disposition: form-data; '
                   b'name="file"; filename="big.npz"\r\n\r\n')
            for i in range(0, len(big), 10_000):
                yield big[i:i + 10_000]
            yield b"\r\n--" + boundary + b"--\r\n"

        chunked = http.post("/v1/datasets", content=chunks(),
                            headers={"content-type": "multipart/form-data; boundary=b0undary"})
        assert chunked.status_code == 413, chunked.text
        # Under the cap, the same server takes it.
        small = upload(http, _name("small"), npz_bytes(**toy_arrays(seed=3)))
        assert small.status_code == 201, small.text
        assert http.delete(f"/v1/datasets/{small.json()['id']}").status_code == 204


def test_the_spec_body_limit_still_holds_for_a_json_import(client):
    response = client.post("/v1/datasets", content=b" " * 300_000,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


# --- URL imports --------------------------------------------------------------------------------


def test_a_url_import_round_trips(client, settings, file_server):
    arrays = toy_arrays(seed=21)
    file_server.files["remote.npz"] = npz_bytes(**arrays)
    url = f"{file_server.url}/remote.npz"
    response = client.post("/v1/datasets", json={"url": url, "name": _name("url")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == {"url": url} and body["format"] == "npz"
    stored = load_arrays(settings.dataset_dir, body["sha256"], mmap=False)
    np.testing.assert_array_equal(stored["x_train"], arrays["x_train"])
    # The format may be given when the path does not tell it.
    file_server.files["download"] = b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n"
    csv = client.post("/v1/datasets", json={"url": f"{file_server.url}/download",
                                            "format": "csv", "name": _name("url")})
    assert csv.status_code == 201, csv.text
    assert csv.json()["input_shape"] == [2]


def _import_error(http: httpx.Client, url: str, status: int) -> dict:
    response = http.post("/v1/datasets", json={"url": url, "name": _name("url")})
    assert response.status_code == status, response.text
    (detail,) = response.json()["detail"]
    assert detail["field"] == "url"
    return detail


def test_a_url_import_that_fails_is_a_422_naming_url(client, file_server, nothing_left):
    assert "404" in _import_error(client, f"{file_server.url}/missing.npz", 422)["message"]
    closed = f"http://127.0.0.1:{free_port()}/data.npz"
    assert "could not fetch" in _import_error(client, closed, 422)["message"]
    for url in ("file:///etc/passwd", "ftp://example.com/a.npz", "not a url"):
        assert "http" in _import_error(client, url, 422)["message"]


def test_a_server_sending_more_than_the_cap_is_cut_off(small_cap_url, file_server,
                                                       nothing_left):
    file_server.files["large.npz"] = b"\0" * (SMALL_CAP + 1)
    with httpx.Client(base_url=small_cap_url, timeout=30) as http:
        started = time.monotonic()
        endless = _import_error(http, f"{file_server.url}/endless.npz", 413)
        assert "nothing was kept" in endless["message"]
        assert time.monotonic() - started < 10  # cut off, not read to the end
        _import_error(http, f"{file_server.url}/large.npz", 413)  # by its Content-Length


# --- delete -------------------------------------------------------------------------------------


def _insert_job(database_url: str, state: str, dataset: dict) -> uuid.UUID:
    job_id = uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO job (id, name, spec, state) VALUES (%s, %s, %s, %s)",
                     (job_id, "uses-a-dataset", json.dumps({"dataset": dataset}), state))
    return job_id


def test_delete_refuses_while_a_queued_or_running_job_uses_the_dataset(client, settings):
    body = upload(client, _name("busy"), npz_bytes(**toy_arrays(seed=33))).json()
    folder = settings.dataset_dir / body["sha256"]
    refs = [{"id": body["id"]}, {"name": body["name"]}, {"name": "x", "sha256": body["sha256"]}]
    for state, ref in zip(("queued", "running", "queued"), refs, strict=True):
        job_id = _insert_job(settings.database_url, state, ref)
        response = client.delete(f"/v1/datasets/{body['id']}")
        assert response.status_code == 409, response.text
        assert str(job_id) in response.json()["detail"][0]["message"]
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("UPDATE job SET state = 'succeeded' WHERE id = %s", (job_id,))
    assert folder.is_dir()
    assert client.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert not folder.exists()
    assert client.get(f"/v1/datasets/{body['name']}").status_code == 404


def test_built_in_datasets_are_listed_described_and_never_deleted(client):
    digits = client.get("/v1/datasets/digits").json()
    assert digits["builtin"] is True and digits["input_shape"] == [1, 8, 8]
    assert client.delete("/v1/datasets/digits").status_code == 409
    assert client.get(f"/v1/datasets/{uuid.uuid4()}").status_code == 404


# --- memory -------------------------------------------------------------------------------------


class _Sink:
    """A write-only stream that zipfile writes into and a generator drains."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def lazy_npz(rows: int, width: int) -> Iterator[bytes]:
    """An .npz (a zip of stored, uncompressed .npy members) of zeros (rows, width) float32
    and labels 0/1, written as it is read: never more than a chunk in memory."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (rows, width)})
            block = np.zeros((4096, width), np.float32).tobytes()
            for start in range(0, rows, 4096):
                member.write(block[:min(4096, rows - start) * width * 4])
                yield sink.drain()
        with archive.open("y_train.npy", "w") as member:
            np.lib.format.write_array(member, (np.arange(rows) % 2).astype(np.int64))
    yield sink.drain()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _multipart(name: str, rows: int, width: int, boundary: str) -> Iterator[bytes]:
    yield (f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
           f'{name}\r\n--{boundary}\r\nContent-Disposition: form-data; '
           f'name="file"; filename="big.npz"\r\n\r\n').encode()
    yield from lazy_npz(rows, width)
    yield f"\r\n--{boundary}--\r\n".encode()


ROWS, WIDTH = 1 << 20, 256  # 1 GiB of float32
BOUNDARY = "memtest0boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(scope="module")
def memory_api(service_env, tmp_path_factory) -> Iterator[tuple[str, int, float]]:
    """An API of its own, so that its peak resident memory is this module's uploads only:
    (url, pid, idle peak in MB). It imports torch (networks are built on the meta device), so
    it idles at about 320 MB: the budget is what an upload adds on top of that."""
    service, url = start_api(service_env, tmp_path_factory.mktemp("api-memory"))
    httpx.get(f"{url}/v1/datasets", timeout=30)  # warm: the first request imports the routes
    # and the network check: the API warms it in a thread at start (torch's decompositions,
    # ~50 MB), which must not land inside an upload's measurement. A validation waits for it.
    httpx.post(f"{url}/v1/jobs/validate", json=load_example("digits-mlp"),
               timeout=120).raise_for_status()
    yield url, service.proc.pid, _peak_rss_mb(service.proc.pid)
    service.stop()


def test_receiving_a_1_gib_body_holds_none_of_it_in_memory(memory_api):
    url, pid, idle = memory_api
    started = time.monotonic()
    # Refused for its name only after the whole body is on disk: this is the receiving alone.
    response = httpx.post(f"{url}/v1/datasets", content=_multipart("../no", ROWS, WIDTH,
                                                                   BOUNDARY),
                          headers=MULTIPART, timeout=300)
    peak = _peak_rss_mb(pid)
    print(f"\nreceiving 1 GiB: {time.monotonic() - started:.1f} s; API idle {idle:.0f} MB, "
          f"peak {peak:.0f} MB (+{peak - idle:.0f})")
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "name"
    assert peak - idle < 50, f"receiving the body grew the API by {peak - idle:.0f} MB"


def test_a_1_gib_upload_keeps_the_api_small(memory_api):
    url, pid, idle = memory_api
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=300) as http:
        response = http.post("/v1/datasets", content=_multipart(_name("big"), ROWS, WIDTH,
                                                                BOUNDARY), headers=MULTIPART)
        elapsed, peak = time.monotonic() - started, _peak_rss_mb(pid)
        print(f"\n1 GiB upload ({response.status_code}): {elapsed:.1f} s; API idle {idle:.0f} "
              f"MB, peak {peak:.0f} MB (+{peak - idle:.0f})")
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["splits"]["train"] == ROWS and created["input_shape"] == [WIDTH]
        assert created["bytes"] > ROWS * WIDTH * 4
        assert created["feature_stats"]["std"] == 0.0
        assert http.delete(f"/v1/datasets/{created['id']}").status_code == 204
    assert peak - idle < 150, f"the API's resident memory grew by {peak - idle:.0f} MB"


def test_an_api_starting_clears_what_a_crashed_upload_left_but_not_fresh_work(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    store, uploads = settings.dataset_dir, settings.data_dir / "uploads"
    old_folder, old_body = store / ".tmp-crashed", uploads / "crashed.part"
    fresh_folder, fresh_body = store / ".tmp-writing", uploads / "receiving.part"
    kept = store / ("a" * 64)
    for folder in (old_folder, fresh_folder, kept):
        folder.mkdir(parents=True)
    uploads.mkdir()
    for body in (old_body, fresh_body):
        body.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (old_folder, old_body, kept):
        os.utime(path, (two_hours_ago, two_hours_ago))

    create_app(settings)
    assert not old_folder.exists() and not old_body.exists()
    assert fresh_folder.is_dir() and fresh_body.is_file() and kept.is_dir()
