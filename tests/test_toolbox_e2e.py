"""The toolbox seen from outside: jobs submitted over HTTP, trained by the real worker, their
per-layer metrics read back with GET /v1/jobs/{id}/metrics. Each job is small (a few hundred
points of spirals), so the file takes seconds of training, not minutes.

Settings were picked by running each job on several training and data seeds: the effects
asserted are many times larger than their spread (sigmoid's gradient ratio is 1e5 or more,
relu's below 10; dropout cuts the loss gap three- to ten-fold)."""

from __future__ import annotations

import httpx

from tests.conftest import wait_for_state

FINAL = {"succeeded", "failed", "cancelled"}
# A checkpoint per epoch (the default) would cost more than these epochs' training.
ONLY_FINAL_CHECKPOINT = {"checkpoint_every_epochs": 0}


def _train(client: httpx.Client, spec: dict) -> dict:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job = wait_for_state(client, response.json()["id"], FINAL)
    assert job["state"] == "succeeded", job["error"]
    return job


def _series(client: httpx.Client, job: dict, names: list[str]) -> dict[str, list[float]]:
    response = client.get(f"/v1/jobs/{job['id']}/metrics", params={"names": ",".join(names)})
    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert sorted(series) == sorted(names)
    return {name: series[name]["value"] for name in names}


def _deep_mlp(activation: str, init: str, epochs: int = 2) -> dict:
    """Ten linear layers of width 32 with the activation between them: layers.0 ... layers.18."""
    layers: list[dict] = []
    for _ in range(9):
        layers += [{"type": "linear", "out_features": 32}, {"type": activation}]
    layers.append({"type": "linear", "out_features": 3})
    return {
        "name": f"deep-{activation}-{init}",
        "dataset": {"name": "spirals", "n_samples": 300},
        "model": {"init": init, "layers": layers},
        "optimizer": {"type": "sgd", "lr": 0.1},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 0, **ONLY_FINAL_CHECKPOINT},
    }


def _parametrised(client: httpx.Client, spec: dict) -> list[str]:
    """The layers with parameters, in the order of the model summary that validate returns."""
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()["model"]["layers"] if row["params"]]


def _first_to_last(client: httpx.Client, spec: dict) -> list[float]:
    """Per epoch, the last layer's gradient norm over the first layer's."""
    names = _parametrised(client, spec)
    assert names == [f"layers.{2 * i}" for i in range(10)]
    job = _train(client, spec)
    wanted = [f"{kind}/{name}" for kind in ("grad_norm", "weight_norm", "update_ratio")
              for name in names]
    summary = job["summary"]
    assert set(wanted) <= summary["latest"].keys()
    assert not [name for name in summary["best"] if "/" in name]  # diagnostics, not scores
    series = _series(client, job, wanted)
    epochs = spec["training"]["epochs"]
    assert all(len(values) == epochs for values in series.values())  # one point per epoch
    assert all(v > 0 for values in series.values() for v in values)
    first, last = series["grad_norm/layers.0"], series["grad_norm/layers.18"]
    return [b / a for a, b in zip(first, last, strict=True)]


def test_sigmoid_gradients_vanish_in_a_deep_mlp_and_relu_with_he_init_does_not(client, worker
                                                                              ) -> None:
    # Xavier is the init made for sigmoid and tanh: the gradients still vanish (by 0.25, the
    # sigmoid's largest slope, per layer), so the activation is to blame, not a tiny init.
    sigmoid = _first_to_last(client, _deep_mlp("sigmoid", "xavier_normal"))
    relu = _first_to_last(client, _deep_mlp("relu", "he_normal"))
    assert all(ratio >= 100 for ratio in sigmoid), sigmoid  # about 1e5 here
    assert all(ratio < 100 for ratio in relu), relu  # about 5 here


def test_a_twenty_block_residual_net_trains(client, worker) -> None:
    blocks = [{"type": "residual", "layers": [{"type": "relu"},
                                              {"type": "linear", "out_features": 16}]}
              for _ in range(20)]
    spec = {
        "name": "residual-20",
        "dataset": {"name": "spirals", "n_samples": 450},
        "model": {"init": "he_normal", "layers": [
            {"type": "linear", "out_features": 16}, *blocks,
            {"type": "relu"}, {"type": "linear", "out_features": 3},
        ]},
        "optimizer": {"type": "adam", "lr": 0.005},
        "training": {"epochs": 8, "batch_size": 32, "seed": 0, **ONLY_FINAL_CHECKPOINT},
    }
    names = _parametrised(client, spec)
    assert names == ["layers.0", *[f"layers.{i}.layers.1" for i in range(1, 21)], "layers.22"]
    job = _train(client, spec)
    assert job["summary"]["test"]["test_accuracy"] >= 0.75  # chance is 1/3; about 0.9 here
    series = _series(client, job, ["grad_norm/layers.0", "grad_norm/layers.22"])
    # Through 20 blocks the shortcuts carry the gradient back to the first layer.
    assert series["grad_norm/layers.22"][-1] < 100 * series["grad_norm/layers.0"][-1]


def _wide_mlp(p: float) -> dict:
    """Two hidden layers of 256 on 60 training points of noisy spirals: it memorises them."""
    hidden = [{"type": "linear", "out_features": 256}, {"type": "relu"},
              {"type": "dropout", "p": p}]
    return {
        "name": f"overfit-dropout-{p}",
        "dataset": {"name": "spirals", "n_samples": 150, "noise": 0.8, "val_fraction": 0.5},
        "model": {"init": "he_normal",
                  "layers": [*hidden, *hidden, {"type": "linear", "out_features": 3}]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 80, "batch_size": 64, "seed": 0, **ONLY_FINAL_CHECKPOINT},
    }


def test_dropout_narrows_the_gap_between_training_and_validation(client, worker) -> None:
    # train_* are the epoch's running figures, dropout on, as every job reports them.
    gaps = {}
    for p in (0.0, 0.5):
        latest = _train(client, _wide_mlp(p))["summary"]["latest"]
        gaps[p] = (latest["val_loss"] - latest["train_loss"],
                   latest["train_accuracy"] - latest["val_accuracy"])
    plain_loss, plain_accuracy = gaps[0.0]
    dropout_loss, dropout_accuracy = gaps[0.5]
    assert plain_loss > 0.5 and plain_accuracy > 0.15, gaps  # without dropout it overfits
    assert dropout_loss < 0.5 * plain_loss, gaps  # 0.91 against 0.16 here
    assert dropout_accuracy < plain_accuracy, gaps
