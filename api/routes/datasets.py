"""/v1/datasets: the datasets a job can name."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, HTTPException

from core import datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _describe(name: str) -> dict:
    info = dataclasses.asdict(datasets.describe(name))
    info["options"] = sorted(datasets.BUILTINS[name].tunable)
    info["builtin"] = True
    return info


@router.get("")
def list_datasets() -> list[dict]:
    return [_describe(name) for name in sorted(datasets.BUILTINS)]


@router.get("/{name}")
def get_dataset(name: str) -> dict:
    if name not in datasets.BUILTINS:
        raise HTTPException(404, f"no dataset named {name!r}; GET /v1/datasets lists them")
    return _describe(name)
