"""POST /v1/jobs/{id}/predict against the real stack: an API, a worker, PostgreSQL, and the
API's prediction server process. Answers are checked a second way: the checkpoint file loaded
with plain PyTorch (models.build and the saved normalization), as a client would."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from core import datasets
from core.specs.job import JobSpec
from models.build import build_model
from tests.conftest import load_example, make_api_key, start_api, wait_for_state

pytestmark = pytest.mark.usefixtures("worker")


def submit(client: httpx.Client, spec: dict) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def digits_spec(name: str, epochs: int = 3, **training) -> dict:
    spec = load_example("digits-mlp")
    spec["name"] = name
    spec["training"].update(epochs=epochs, **training)
    return spec


def table_csv() -> bytes:
    """Two features, three named classes, separable by the first feature."""
    rng = np.random.default_rng(0)
    rows = ["height,weight,kind"]
    for i in range(120):
        k = i % 3
        rows.append(f"{k * 2 + rng.normal(0, 0.3):.3f},{rng.normal(0, 1):.3f},"
                    f"{['ant', 'bee', 'cat'][k]}")
    return "\n".join(rows).encode()


@pytest.fixture(scope="module")
def jobs(api_url: str) -> dict[str, str]:
    """A trained digits MLP and a trained MLP on an uploaded CSV table: submitted together,
    waited for once per module."""
    with httpx.Client(base_url=api_url, timeout=60) as http:
        digits = submit(http, digits_spec("predict-digits"))
        upload = http.post("/v1/datasets", files={"file": ("animals.csv", table_csv())},
                           data={"name": f"predict-animals-{time.time_ns()}", "target": "kind"})
        assert upload.status_code == 201, upload.text
        table = load_example("spirals-mlp")
        table["name"] = "predict-table"
        table["dataset"] = {"id": upload.json()["id"], "val_fraction": 0.2}
        table["training"].update(epochs=5)
        table_id = submit(http, table)
        for job_id in (digits, table_id):
            assert wait_for_state(http, job_id, {"succeeded", "failed"}, 180)["state"] \
                == "succeeded"
    return {"digits": digits, "table": table_id}


def message(response: httpx.Response) -> str:
    """A 413/415/422's one problem's message (detail is a list, as every route's)."""
    [problem] = response.json()["detail"]
    assert problem["message"].startswith(f"{problem['field']}: ")
    return problem["message"]


def reference_probabilities(client: httpx.Client, job_id: str, x: np.ndarray,
                            checkpoint: str = "best") -> np.ndarray:
    """The checkpoint file, downloaded and run with plain PyTorch: the answer to compare."""
    rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    row = next(r for r in rows if r["best"]) if checkpoint == "best" else rows[-1]
    data = client.get(f"/v1/jobs/{job_id}/checkpoints/{row['id']}/download").content
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    spec = JobSpec.model_validate(payload["spec"])
    net, _ = build_model(spec.model, (1, 8, 8), shape_device="cpu")
    net.load_state_dict(payload["model"])
    net.eval()
    norm = payload["normalization"]
    inputs = torch.from_numpy(x.reshape(len(x), 1, 8, 8))
    if "mean" in norm:
        inputs = (inputs - norm["mean"]) / norm["std"]
    with torch.no_grad():
        return torch.softmax(net(inputs), dim=1).numpy()


def digits_test_rows(n: int) -> np.ndarray:
    return datasets.load("digits").x_test[:n].astype(np.float32)


def probabilities(answer: dict) -> np.ndarray:
    return np.array([[p["probabilities"][str(k)] for k in range(10)]
                     for p in answer["predictions"]])


def test_json_arrays_answer_as_plain_pytorch_does(client, jobs):
    x = digits_test_rows(40)
    response = client.post(f"/v1/jobs/{jobs['digits']}/predict",
                           json={"inputs": x.reshape(40, -1).tolist()})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["task"] == "classification" and answer["checkpoint"]["cached"] in (True, False)
    expected = reference_probabilities(client, jobs["digits"], x)
    np.testing.assert_allclose(probabilities(answer), expected, atol=1e-5)
    first = answer["predictions"][0]
    assert first["class"] == str(first["index"]) == str(int(expected[0].argmax()))
    assert [p["index"] for p in answer["predictions"]] == expected.argmax(1).tolist()
    # The test split is learnt: most answers are the true digit.
    truth = datasets.load("digits").y_test[:40]
    assert (expected.argmax(1) == truth).mean() > 0.8

    # Rows in the input shape (8x8 or 1x8x8) are the same rows.
    nested = client.post(f"/v1/jobs/{jobs['digits']}/predict",
                         json={"inputs": x[:3].reshape(3, 8, 8).tolist()}).json()
    assert nested["predictions"] == answer["predictions"][:3]


def test_files_npz_csv_and_images(client, jobs):
    url = f"/v1/jobs/{jobs['digits']}/predict"
    x = digits_test_rows(5)
    by_json = client.post(url, json={"inputs": x.reshape(5, -1).tolist()}).json()
    buffer = io.BytesIO()
    np.savez(buffer, x=x.reshape(5, 1, 8, 8))
    by_npz = client.post(url, files={"file": ("x.npz", buffer.getvalue())})
    assert by_npz.status_code == 200, by_npz.text
    assert by_npz.json()["predictions"] == by_json["predictions"]
    text = "\n".join(",".join(f"{v:g}" for v in row) for row in x.reshape(5, -1))
    by_csv = client.post(url, files={"file": ("x.csv", text.encode())})
    assert by_csv.status_code == 200, by_csv.text
    assert by_csv.json()["predictions"] == by_json["predictions"]

    # An image: white ink on black, 0..255, read back as digits' 0..16; any size is resized.
    pixels = np.round(x[0].reshape(8, 8) * 255 / 16).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels, "L").save(png, "PNG")
    big = io.BytesIO()
    Image.fromarray(pixels, "L").resize((64, 64), Image.Resampling.NEAREST).convert(
        "RGB").save(big, "JPEG", quality=95)
    by_image = client.post(url, files=[("file", ("a.png", png.getvalue(), "image/png")),
                                       ("file", ("b.jpg", big.getvalue(), "image/jpeg"))])
    assert by_image.status_code == 200, by_image.text
    expected = reference_probabilities(client, jobs["digits"],
                                       (pixels.astype(np.float32) * 16 / 255)[None])
    got = by_image.json()["predictions"]
    assert len(got) == 2
    np.testing.assert_allclose(probabilities({"predictions": got[:1]}), expected, atol=1e-5)
    assert got[1]["class"] == got[0]["class"] == by_json["predictions"][0]["class"]


@pytest.mark.parametrize(("body", "status", "field", "words"), [
    ({"inputs": [[0.0] * 63]}, 422, "inputs[0]", "has 63 values, the model takes 64 (1x8x8)"),
    ({"inputs": [[0.0] * 64, [0.0] * 65]}, 422, "inputs[1]", "has 65 values"),
    ({"inputs": [[0.0] * 32] * 2 + [[0.0] * 64]}, 422, "inputs[0]", "has 32 values"),
    ({"inputs": [["a"] * 64]}, 422, "inputs[0]", "send numbers"),
    ({"inputs": [[None] * 64]}, 422, "inputs[0]", "send numbers"),
    ({"inputs": []}, 422, "inputs", "at least one"),
    ({"inputs": [[0.0] * 64] * 1025}, 413, "inputs", "TRAINDOCK_PREDICT_MAX_ROWS"),
    ({"inputs": [[0.0] * 64], "colour": 1}, 422, "colour", "only"),
    ({"rows": [{"a": 1}]}, 422, "rows", "no feature names"),
    ({"x": 1}, 422, "body", "exactly one of"),
    ({"inputs": [[1e39] + [0.0] * 63]}, 422, "inputs[0]", "finite"),
])
def test_inputs_the_model_cannot_take_are_named(client, jobs, body, status, field, words):
    response = client.post(f"/v1/jobs/{jobs['digits']}/predict", json=body)
    assert response.status_code == status, response.text
    detail = message(response)
    assert detail.startswith(f"{field}: ") and words in detail, detail


def test_nan_infinity_and_broken_bodies(client, jobs):
    url = f"/v1/jobs/{jobs['digits']}/predict"
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = '{"inputs": [[' + ", ".join(["0"] * 10 + [literal] + ["0"] * 53) + "]]}"
        response = client.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert message(response).startswith("inputs[0]: is NaN or infinite (value 10)")
    broken = client.post(url, content=b'{"inputs": [[1,', headers={"content-type":
                                                                     "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in message(broken)
    text = client.post(url, content=b"1,2", headers={"content-type": "text/csv"})
    assert text.status_code == 415 and "multipart/form-data" in message(text)
    named = client.post(url, files={"file": ("x.parquet", b"1")})
    assert named.status_code == 422 and message(named).startswith("file: ")
    not_png = client.post(url, files={"file": ("x.png", b"not an image")})
    assert not_png.status_code == 422 and "x.png" in message(not_png)
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((2, 7)))
    wrong = client.post(url, files={"file": ("x.npz", npz.getvalue())})
    assert wrong.status_code == 422
    assert "x has shape 2x7; the model takes rows of 64 (1x8x8)" in message(wrong)
    for which, status, words in (("worst", 422, "checkpoint"),
                                 ("999999", 404, "no checkpoint at step 999999")):
        response = client.post(f"{url}?checkpoint={which}", json={"inputs": [[0.0] * 64]})
        assert response.status_code == status and words in response.text, response.text


def test_a_table_job_takes_rows_of_named_features_or_arrays(client, jobs):
    url = f"/v1/jobs/{jobs['table']}/predict"
    inputs = client.get(url).json()
    assert inputs["input"] in ("table", "array") and inputs["input_shape"] == [2]
    assert inputs["class_names"] == ["ant", "bee", "cat"] and inputs["has_checkpoint"]
    by_arrays = client.post(url, json={"inputs": [[0.0, 0.1], [4.0, -0.3]]})
    assert by_arrays.status_code == 200, by_arrays.text
    assert [p["class"] for p in by_arrays.json()["predictions"]] == ["ant", "cat"]
    assert sum(by_arrays.json()["predictions"][0]["probabilities"].values()) == \
        pytest.approx(1, abs=1e-5)
    image = client.post(url, files={"file": ("a.png", b"\x89PNG")})
    assert image.status_code == 422 and "not an image" in message(image)
    if inputs["feature_names"] is None:
        pytest.skip("feature names of CSV uploads arrive with the evaluation branch")
    assert inputs["feature_names"] == ["height", "weight"]
    by_rows = client.post(url, json={"rows": [{"weight": 0.1, "height": 0.0},
                                              {"height": 4.0, "weight": -0.3}]})
    assert by_rows.json()["predictions"] == by_arrays.json()["predictions"]
    unknown = client.post(url, json={"rows": [{"height": 1, "weight": 2, "age": 3}]})
    assert unknown.status_code == 422
    assert message(unknown).startswith("rows[0]: unknown feature(s) 'age'")
    missing = client.post(url, json={"rows": [{"height": 1}]})
    assert missing.status_code == 422 and "lacks feature(s) 'weight'" in missing.text
    csv = client.post(url, files={"file": ("t.csv", b"weight,height\n0.1,0\n-0.3,4\n")})
    assert csv.json()["predictions"] == by_arrays.json()["predictions"]
    wrong = client.post(url, files={"file": ("t.csv", b"height,size\n1,2\n")})
    assert wrong.status_code == 422 and "'size'" in message(wrong)


def test_a_digits_job_describes_its_inputs_as_an_image(client, jobs):
    inputs = client.get(f"/v1/jobs/{jobs['digits']}/predict").json()
    assert inputs == {"task": "classification", "input": "image", "input_shape": [1, 8, 8],
                      "feature_names": None, "class_names": [str(k) for k in range(10)],
                      "image_value_max": 16.0, "has_checkpoint": True}


def test_a_job_without_a_checkpoint_is_a_409(client):
    job_id = submit(client, digits_spec("predict-none", epochs=500,
                                        checkpoint_every_epochs=0))
    try:
        response = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[0.0] * 64]})
        assert response.status_code == 409, response.text
        assert "has no checkpoint yet" in response.json()["detail"]
    finally:
        client.post(f"/v1/jobs/{job_id}/cancel")
        wait_for_state(client, job_id, {"cancelled", "succeeded", "failed"}, 60)


def submit_as(http: httpx.Client, token: str, spec: dict) -> str:
    response = http.post("/v1/jobs", json=spec, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_another_owners_job_is_a_404_and_the_read_scope_suffices(settings, auth_api_url):
    mine = make_api_key(settings, "read,submit", owner="predict-alice")
    reader = make_api_key(settings, "read", owner="predict-alice")
    other = make_api_key(settings, "read,submit", owner="predict-bob")
    with httpx.Client(base_url=auth_api_url, timeout=30) as http:
        job_id = submit_as(http, mine, digits_spec("predict-owned", epochs=1))
        body = {"inputs": [[0.0] * 64]}
        theirs = http.post(f"/v1/jobs/{job_id}/predict", json=body,
                           headers={"Authorization": f"Bearer {other}"})
        assert theirs.status_code == 404, theirs.text
        read_only = http.post(f"/v1/jobs/{job_id}/predict", json=body,
                              headers={"Authorization": f"Bearer {reader}"})
        assert read_only.status_code in (200, 409), read_only.text
        http.post(f"/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {mine}"})


@pytest.fixture(scope="module")
def small_cache_api(service_env, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """An API of its own whose prediction server keeps at most 68 kB of models: the digits
    MLP (39 kB of parameters and buffers) and the table MLP (18 kB) fit together, two digits
    MLPs do not. And the API's process id."""
    service, url = start_api(service_env, tmp_path_factory.mktemp("predict-api"),
                             TRAINDOCK_PREDICT_CACHE_MB="0.065")
    yield url, service.proc.pid
    service.stop()


def prediction_servers(api_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(api_pid).children(recursive=True)
            if "inference.server" in " ".join(p.cmdline())]


def test_the_cache_evicts_by_size_and_keys_by_checkpoint(jobs, small_cache_api):
    url, api_pid = small_cache_api
    digits, table = jobs["digits"], jobs["table"]
    with httpx.Client(base_url=url, timeout=60) as http:
        def cached(job_id: str, inputs: list, checkpoint: str = "best") -> bool:
            response = http.post(f"/v1/jobs/{job_id}/predict?checkpoint={checkpoint}",
                                 json={"inputs": inputs})
            assert response.status_code == 200, response.text
            return response.json()["checkpoint"]["cached"]

        row, pair = [[1.0] * 64], [[0.0, 1.0]]
        assert cached(digits, row) is False
        assert cached(digits, row) is True
        assert cached(table, pair) is False  # loaded: the table MLP is small, both fit
        assert cached(digits, row) is True
        # Another checkpoint of the same job is another model: loaded, and the digits MLP's
        # two checkpoints do not fit together, so the best one goes.
        steps = [r["step"] for r in http.get(f"/v1/jobs/{digits}/checkpoints").json()]
        best = next(r["step"] for r in http.get(f"/v1/jobs/{digits}/checkpoints").json()
                    if r["best"])
        other = next(s for s in steps if s != best)
        assert cached(digits, row, str(other)) is False
        assert cached(digits, row) is False
        assert len(prediction_servers(api_pid)) == 1


def test_the_server_survives_bad_requests_and_comes_back_when_killed(jobs, small_cache_api):
    url, api_pid = small_cache_api
    with httpx.Client(base_url=url, timeout=60) as http:
        predict = f"/v1/jobs/{jobs['digits']}/predict"
        assert http.post(predict, json={"inputs": [[0.0] * 64]}).status_code == 200
        [server] = prediction_servers(api_pid)
        for body in ({"inputs": [[1e39] * 64]}, {"inputs": "x"}, {"rows": 3}):
            assert http.post(predict, json=body).status_code == 422
        assert http.post(predict, files={"file": ("x.npz", b"PK\x03\x04junk")}).status_code \
            == 422
        assert http.post(predict, json={"inputs": [[0.0] * 64]}).status_code == 200
        assert [p.pid for p in prediction_servers(api_pid)] == [server.pid]

        server.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.is_running() \
                and server.status() != psutil.STATUS_ZOMBIE:  # the API reaps it when asked
            time.sleep(0.05)
        again = http.post(predict, json={"inputs": [[0.0] * 64]})
        assert again.status_code == 200, again.text
        assert again.json()["checkpoint"]["cached"] is False
        [restarted] = prediction_servers(api_pid)
        assert restarted.pid != server.pid


def test_the_python_client_predicts_from_arrays_rows_and_files(api_url, jobs, tmp_path):
    from traindock import Client
    from traindock.errors import Invalid

    x = digits_test_rows(3)
    with Client(api_url) as td:
        answer = td.predict(jobs["digits"], x)  # a numpy array, sent as lists
        assert answer.task == "classification" and len(answer.classes) == 3
        np.savez(tmp_path / "x.npz", x=x)
        by_file = td.predict(jobs["digits"], files=tmp_path / "x.npz", checkpoint="last")
        assert len(by_file.predictions) == 3 and by_file.checkpoint["step"] >= 1
        with pytest.raises(Invalid, match=r"inputs\[0\]: has 2 values"):
            td.predict(jobs["digits"], [[1.0, 2.0]])
        table = td.predict(jobs["table"], [[0.0, 0.1]])
        assert table.classes == ["ant"]


def test_the_cli_predicts_a_file_and_json_on_standard_input(api_url, jobs, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env |= {"TRAINDOCK_URL": api_url, "PYTHONPATH": str(ROOT)}

    def traindock(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", "predict", *args], cwd=ROOT,
                              env=env, input=stdin, capture_output=True, text=True, timeout=60)

    x = digits_test_rows(2)
    np.savez(tmp_path / "x.npz", x=x)
    by_file = traindock(jobs["digits"][:8], str(tmp_path / "x.npz"))
    assert by_file.returncode == 0, by_file.stderr
    lines = by_file.stdout.splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in "0123456789" for line in lines)
    by_stdin = traindock(jobs["digits"], "-", stdin=json.dumps(x.reshape(2, -1).tolist()))
    assert by_stdin.returncode == 0 and by_stdin.stdout == by_file.stdout, by_stdin.stderr
    bad = traindock(jobs["digits"], "-", stdin="[[1, 2]]")
    assert bad.returncode != 0 and "inputs[0]: has 2 values" in bad.stderr


def test_the_openapi_document_describes_predict(client):
    document = client.get("/openapi.json").json()
    post = document["paths"]["/v1/jobs/{job_id}/predict"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "PredictOut" in json.dumps(post["responses"]["200"])
    assert "predictions" in document["components"]["schemas"]["PredictOut"]["properties"]


def test_the_server_dies_with_its_api_process(jobs, small_cache_api):
    """Last in this module: it kills the small-cache API (SIGKILL, no clean-up of its own),
    and the kernel takes the prediction server with it (core/processes.py die_with_parent)."""
    url, api_pid = small_cache_api
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.post(f"/v1/jobs/{jobs['digits']}/predict",
                         json={"inputs": [[0.0] * 64]}).status_code == 200
    [server] = prediction_servers(api_pid)
    os.kill(api_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not server.is_running() or server.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"prediction server {server.pid} outlived its API process")
