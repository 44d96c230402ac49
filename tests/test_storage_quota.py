"""TRAINDOCK_MAX_STORED_BYTES_PER_OWNER on real API processes: an upload that would pass the
limit is a 413 naming it and leaves nothing on disk; an owner at the limit is refused an
upload before its body is read and a submission, until it deletes something."""

from __future__ import annotations

import httpx

from tests.conftest import load_example, start_api
from tests.test_datasets_api import npz_bytes, stored_files, toy_arrays, upload


def _sized(n: int) -> bytes:
    return npz_bytes(**toy_arrays(n))


def test_an_owner_past_its_stored_bytes_is_refused_until_it_frees_some(service_env,
                                                                      fresh_database,
                                                                      tmp_path):
    env = service_env | {"TRAINDOCK_DATABASE_URL": fresh_database,
                         "TRAINDOCK_DATA_DIR": str(tmp_path / "data")}
    data_dir = tmp_path / "data"
    roomy, url = start_api(env, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            first = upload(http, "small", _sized(200))
            assert first.status_code == 201, first.text
            held = http.get("/v1/usage").json()["stored_bytes"]
            assert held == first.json()["bytes"] > 0
    finally:
        roomy.stop()
    # The same owner ("local", keys off) on a server whose limit is what it holds now, plus
    # a little: a small dataset fits no more, a larger one would pass it.
    limit = held + 100
    tight, url = start_api(env, tmp_path, TRAINDOCK_MAX_STORED_BYTES_PER_OWNER=str(limit))
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            before = stored_files(data_dir)
            big = upload(http, "big", _sized(2000))
            assert big.status_code == 413, big.text
            assert "TRAINDOCK_MAX_STORED_BYTES_PER_OWNER" in big.text
            assert stored_files(data_dir) == before
            usage = http.get("/v1/usage").json()
            assert usage == usage | {"stored_bytes": held, "max_stored_bytes": limit}
    finally:
        tight.stop()
    full, url = start_api(env, tmp_path, TRAINDOCK_MAX_STORED_BYTES_PER_OWNER=str(held))
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            refused = upload(http, "tiny", b"x" * 10)
            assert refused.status_code == 413, refused.text
            assert f"{held} bytes" in refused.text or "KiB" in refused.text
            job = http.post("/v1/jobs", json=load_example("digits-mlp"))
            assert job.status_code == 409, job.text
            assert "TRAINDOCK_MAX_STORED_BYTES_PER_OWNER" in job.json()["detail"]
            assert http.delete("/v1/datasets/small").status_code == 204
            assert http.post("/v1/jobs", json=load_example("digits-mlp")).status_code == 201
    finally:
        full.stop()
