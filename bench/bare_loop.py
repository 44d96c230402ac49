"""The reference: the benchmark's jobs trained the way a careful engineer writes it by hand in
plain PyTorch, with no traindock import on the training path. Data as tensors on the device,
randperm shuffling, the same network built with torch.nn (same init, same seed), the same
optimizer, zero_grad(set_to_none=True), loss.item() only every `log_every` steps, validation
each epoch and a test evaluation at the end (what the traindock job also does).

The data is cut as traindock's built-in datasets are (a stratified 20% test split with seed 0,
then a stratified validation split with the job's seed, standardized from the training split),
so both train on identical values; bench/train_overhead.py checks that they agree.

    python bench/bare_loop.py --job mlp|cnn|long [--quick] [--epochs N]

prints one JSON line: steps, train_s (the training function alone), total_s (since the
interpreter started: Python and torch start-up counted) and the final losses.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn

# The jobs, as traindock JobSpecs. "long" is sized so that the full run takes about a minute
# on 2 cores and start-up is amortised; --quick shrinks every job (see job_spec).
JOBS: dict[str, dict] = {
    "mlp": {
        "name": "bench-digits-mlp",
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"init": "he_normal", "layers": [
            {"type": "flatten"}, {"type": "linear", "out_features": 128}, {"type": "relu"},
            {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 10}]},
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "adam", "lr": 0.001, "weight_decay": 0.0},
        "training": {"epochs": 20, "batch_size": 64, "seed": 0},
        "resources": {"device": "cpu"},
    },
    "cnn": {
        "name": "bench-digits-cnn",
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"init": "he_normal", "layers": [
            {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": "same"},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": "same"},
            {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
            {"type": "dropout", "p": 0.25}, {"type": "linear", "out_features": 10}]},
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": 15, "batch_size": 64, "seed": 0},
        "resources": {"device": "cpu"},
    },
    "long": {
        "name": "bench-spirals-long",
        "dataset": {"name": "spirals", "classes": 3, "noise": 0.2, "n_samples": 200_000},
        "model": {"init": "he_normal", "layers": [
            {"type": "linear", "out_features": 64}, {"type": "relu"},
            {"type": "linear", "out_features": 64}, {"type": "relu"},
            {"type": "linear", "out_features": 3}]},
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 60, "batch_size": 128, "seed": 0},
        "resources": {"device": "cpu"},
    },
}
QUICK = {"mlp": {"epochs": 2}, "cnn": {"epochs": 2}, "long": {"epochs": 2, "n_samples": 4000}}


def job_spec(job: str, quick: bool, epochs: int | None = None) -> dict:
    spec = json.loads(json.dumps(JOBS[job]))
    if epochs is not None:
        spec["training"]["epochs"] = epochs
    if quick:
        spec["training"]["epochs"] = epochs or QUICK[job]["epochs"]
        if "n_samples" in QUICK[job]:
            spec["dataset"]["n_samples"] = QUICK[job]["n_samples"]
    return spec


# ---- data: generated and split by hand ------------------------------------------------------

def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[: int(round((labels == c).sum()
                                                                      * fraction))]
            for c in np.unique(labels)]
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True), held_out


def raw_data(dataset: dict) -> tuple[np.ndarray, np.ndarray]:
    if dataset["name"] == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data.astype(np.float32).reshape(-1, 1, 8, 8), bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    n, k, noise = dataset["n_samples"], dataset["classes"], dataset["noise"]
    labels = np.arange(n) % k
    radius = rng.uniform(0.05, 1.0, n)
    theta = labels * (2 * np.pi / k) + radius * 4.0 + rng.normal(0.0, noise, n)
    x = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return x.astype(np.float32), labels.astype(np.int64)


def load_data(spec: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """train/val/test tensors on `device`, standardized with the training split's statistics."""
    x, y = raw_data(spec["dataset"])
    rest, test = stratified_split(y, 0.2, 0)
    kept, held = stratified_split(y[rest], spec["dataset"].get("val_fraction", 0.1),
                                  spec["training"]["seed"])
    train, val = rest[kept], rest[held]
    mean = x[train].astype(np.float64).mean(axis=0)
    std = np.sqrt(np.square(x[train].astype(np.float64) - mean).mean(axis=0))
    std = np.where(std < 1e-6, 1.0, std)
    mean_t, std_t = torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(
        std.astype(np.float32))
    out = {}
    for name, rows in (("train", train), ("val", val), ("test", test)):
        out[f"x_{name}"] = ((torch.from_numpy(x[rows]) - mean_t) / std_t).to(device)
        out[f"y_{name}"] = torch.from_numpy(y[rows]).to(device)
    return out


# ---- the networks, written out ---------------------------------------------------------------

def he(module: nn.Module, nonlinearity: str) -> nn.Module:
    nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity=nonlinearity)
    nn.init.zeros_(module.bias)
    return module


def build_network(job: str, n_inputs: int) -> nn.Module:
    """Built in spec order after torch.manual_seed(seed), so the draws match traindock's."""
    if job == "mlp":
        return nn.Sequential(nn.Flatten(), he(nn.Linear(n_inputs, 128), "relu"), nn.ReLU(),
                             nn.Dropout(0.2), he(nn.Linear(128, 10), "linear"))
    if job == "cnn":
        return nn.Sequential(
            he(nn.Conv2d(1, 16, 3, padding="same"), "relu"), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2), he(nn.Conv2d(16, 32, 3, padding="same"), "relu"), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), he(nn.Linear(32 * 2 * 2, 10),
                                                                "linear"))
    return nn.Sequential(he(nn.Linear(n_inputs, 64), "relu"), nn.ReLU(),
                         he(nn.Linear(64, 64), "relu"), nn.ReLU(), he(nn.Linear(64, 3), "linear"))


def build_optimizer(spec: dict, model: nn.Module) -> torch.optim.Optimizer:
    opt = dict(spec["optimizer"])
    kind = opt.pop("type")
    return {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[kind](model.parameters(), **opt)


# ---- the loop ------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[float, float]:
    model.eval()
    out = model(x)
    return loss_fn(out, y).item(), (out.argmax(1) == y).float().mean().item()


def train(spec: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
          data: dict[str, torch.Tensor]) -> dict[str, float]:
    cfg = spec["training"]
    x, y = data["x_train"], data["y_train"]
    n, batch = len(x), cfg["batch_size"]
    starts = list(range(0, n, batch))
    if len(starts) > 1 and n - starts[-1] == 1:  # as traindock: no batch of one (batchnorm)
        starts.pop()
    ends = [*starts[1:], n]
    log_every = max(1, math.ceil(len(starts) / 50))
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(cfg["seed"])
    step, last_loss, val = 0, float("nan"), (float("nan"), float("nan"))
    for _ in range(cfg["epochs"]):
        order = torch.randperm(n, generator=shuffle).to(x.device)
        model.train()
        for start, end in zip(starts, ends, strict=True):
            idx = order[start:end]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            step += 1
            if step % log_every == 0:
                last_loss = loss.item()  # the only host sync, at a bounded rate
        val = evaluate(model, loss_fn, data["x_val"], data["y_val"])
    test = evaluate(model, loss_fn, data["x_test"], data["y_test"])
    return {"steps": step, "train_loss_step": last_loss, "val_loss": val[0],
            "val_accuracy": val[1], "test_loss": test[0], "test_accuracy": test[1]}


def run(job: str, quick: bool, epochs: int | None = None, device: torch.device | None = None
        ) -> dict[str, float]:
    """Data, network, optimizer and training, as the script does; train_s times train()."""
    device = device or torch.device("cpu")
    spec = job_spec(job, quick, epochs)
    torch.manual_seed(spec["training"]["seed"])
    data = load_data(spec, device)
    model = build_network(job, int(np.prod(data["x_train"].shape[1:]))).to(device)
    optimizer = build_optimizer(spec, model)
    started = time.perf_counter()
    result = train(spec, model, optimizer, data)
    return {**result, "train_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(JOBS), required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--epochs", type=int, help="override the job's epochs")
    args = parser.parse_args()
    result = run(args.job, args.quick, args.epochs)
    # Since the interpreter started, as the parent counts a subprocess: includes imports.
    result["total_s"] = time.time() - _process_start_time()
    print(json.dumps(result))


def _process_start_time() -> float:
    import psutil

    return psutil.Process().create_time()


if __name__ == "__main__":
    main()
