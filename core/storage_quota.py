"""TRAINDOCK_MAX_STORED_BYTES_PER_OWNER: the message an owner gets when what it stores (its
datasets and its jobs' checkpoints, core/repo/usage.py) would pass the limit. A running
job's checkpoints are never refused mid-run: the limit is checked when a dataset arrives
and when a job is submitted, so an owner can pass it by what its running jobs still write."""

from __future__ import annotations

SETTING = "TRAINDOCK_MAX_STORED_BYTES_PER_OWNER"


def size(n: int) -> str:
    """1536 -> '1.5 KiB'; bytes as people read them."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def over_limit(owner: str, stored: int, adding: int, limit: int) -> str | None:
    """None while `adding` more bytes fit beside `stored` under `limit` (0: no limit), else
    why not. Adding 0 (a submission, a dataset not yet received) asks whether anything more
    fits: an owner exactly at its limit is refused."""
    if not limit or stored + max(adding, 1) <= limit:
        return None
    what = f" and this dataset's {size(adding)}" if adding else ""
    return (f"{owner!r} stores {size(stored)}{what} of datasets and checkpoints; nothing more "
            f"fits in the {size(limit)} this server allows one owner ({SETTING}): delete datasets "
            "(DELETE /v1/datasets/{id}) or finished jobs (DELETE /v1/jobs/{id}) first")
