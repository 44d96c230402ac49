"""`Client`: traindock's API as typed Python calls, for services that integrate with it.

    with Client() as td:                      # $TRAINDOCK_URL, $TRAINDOCK_API_KEY
        job = td.wait(td.submit(spec))
        path = td.download_checkpoint(job, "best", dest="models/")
        model = td.export(job, "onnx", path="models/")  # runs in onnxruntime, raw inputs
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from traindock.errors import (
    FieldError,
    Invalid,
    NotFound,
    TraindockError,
    Unavailable,
    WaitTimeout,
)
from traindock.exports import save_export
from traindock.results import (
    ApiKey,
    Checkpoint,
    Delivery,
    Job,
    LogStream,
    Predictions,
    Series,
    Sweep,
    Usage,
    Validation,
)
from traindock.transport import TIMEOUT_S, Transport, default_api_key

JobRef = str | Job  # a job id, a unique start of one, or a Job
PAGE_SIZE = 100  # jobs per request when iterating; the API allows 1 to 500
HEX = frozenset("0123456789abcdef-")


class Client:
    """The API at `url` (default `$TRAINDOCK_URL`, else http://127.0.0.1:8000), sending
    `api_key` (default `$TRAINDOCK_API_KEY`) as `Authorization: Bearer`. Use it as a
    context manager, or call `close()`. Every failure is a `traindock.errors.TraindockError`.
    A program that already has a `Transport` (its own URL, key and timeout: the terminal
    client) passes it as `transport` instead."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float = TIMEOUT_S, transport: Transport | None = None) -> None:
        self.transport = transport or Transport(
            url, api_key if api_key is not None else default_api_key(), timeout)

    @property
    def url(self) -> str:
        return self.transport.url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- specs and jobs ---------------------------------------------------------------

    def validate(self, spec: Mapping[str, Any] | os.PathLike[str],
                 input_shape: Sequence[int] | None = None) -> Validation:
        """A dry run: the model's layers and shapes; `Invalid` naming each field to fix.
        `input_shape` (per sample, e.g. (1, 64, 64)) builds the network for that input
        instead of the dataset's."""
        params = None if input_shape is None else {
            "input_shape": ",".join(str(size) for size in input_shape)}
        return Validation.from_json(
            self.transport.post("/v1/jobs/validate", _spec(spec), params=params))

    def submit(self, spec: Mapping[str, Any] | os.PathLike[str],
               idempotency_key: str | None = None) -> Job:
        """Queue a job. With `idempotency_key`, a retry of the same spec returns the job the
        first call created instead of a second one (another spec under that key: `Conflict`)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Job.from_json(self.transport.post("/v1/jobs", _spec(spec), headers=headers))

    def job(self, job: JobRef) -> Job:
        """The whole job. `job` may be its id or a unique start of it (as `traindock ls`
        prints, 8 characters)."""
        return Job.from_json(self.transport.get(f"/v1/jobs/{self.resolve(job)}"))

    def resolve(self, job: JobRef) -> str:
        """The full id of the job `job` names: `NotFound` when no id starts with it,
        `Invalid` when several do."""
        if isinstance(job, Job):
            return job.id
        ref = job.strip().lower()
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            pass
        if not ref or not set(ref) <= HEX or len(ref) > 36:
            raise Invalid([FieldError("job_id", f"job_id: {job!r} is not a job id nor the start "
                                      "of one; a job id is a UUID such as "
                                      "3f2a6c1e-8b0d-4c5e-9f21-0a1b2c3d4e5f")])
        page = self.transport.get("/v1/jobs", id_prefix=ref, limit=6)["items"]
        ids = [item["id"] for item in page]
        if not ids:
            raise NotFound(f"no job id starts with {ref!r}; Client.jobs() lists them", 404)
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
            raise Invalid([FieldError("job_id", f"job_id: {ref!r} is the start of several job "
                                      f"ids ({shown}); give more characters")])
        return ids[0]

    def jobs(self, state: str | None = None, name: str | None = None, limit: int | None = None,
             id_prefix: str | None = None, page_size: int = PAGE_SIZE) -> Iterator[Job]:
        """Jobs newest first, page after page (keyset cursor: none repeated or skipped while
        others are submitted), up to `limit` of them. `state` and `id_prefix` are filtered by
        the API; `name` here (the API has no name filter, so every page is still read)."""
        items = self._pages("/v1/jobs", page_size, state=state, id_prefix=id_prefix)
        named = (item for item in items if name is None or item["name"] == name)
        for item in itertools.islice(named, limit):
            yield Job.from_json(item)

    def _pages(self, path: str, page_size: int, **params: Any) -> Iterator[dict]:
        """Every item of a keyset-paged list (GET /v1/jobs, /v1/sweeps), a page fetched only
        when the caller wants more."""
        cursor: str | None = None
        while True:
            page = self.transport.get(path, limit=page_size, cursor=cursor, **params)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def wait(self, job: JobRef, timeout: float | None = None, poll_s: float = 1.0) -> Job:
        """Poll until the job has ended (succeeded, failed, cancelled or pruned), and return
        it. A 503 (the database is away for a moment) is waited out; past `timeout` seconds,
        `WaitTimeout`."""
        job_id = self.resolve(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        while True:
            pause = poll_s
            try:
                last = self.job(job_id)
                if last.final:
                    return last
            except Unavailable as exc:
                if exc.status != 503:
                    raise
                pause = max(poll_s, min(exc.retry_after or poll_s, 5.0))
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = f"still {last.state}" if last else "the API answered only 503"
                    raise WaitTimeout(f"job {job_id} did not end within {timeout:g} s ({seen}); "
                                      "wait longer, or cancel it", last)
                pause = min(pause, left)
            time.sleep(pause)

    def cancel(self, job: JobRef) -> Job:
        """Ask the job to stop: a queued one ends at once, a running one within about a
        second. An ended job: `Conflict`."""
        return Job.from_json(self.transport.post(f"/v1/jobs/{self.resolve(job)}/cancel"))

    def delete(self, job: JobRef) -> None:
        """Delete an ended job with its metrics, checkpoints and logs (queued or running:
        `Conflict`; cancel it and wait first)."""
        self.transport.delete(f"/v1/jobs/{self.resolve(job)}")

    # --- what a job produced ------------------------------------------------------------

    def metrics(self, job: JobRef, names: list[str] | str | None = None,
                since_step: int | None = None, max_points: int | None = None
                ) -> dict[str, Series]:
        """Every series (or those in `names`), each in step order; `since_step` returns only
        later points (incremental polling), `max_points` downsamples a long series."""
        if isinstance(names, list | tuple):
            names = ",".join(names)
        body = self.transport.get(f"/v1/jobs/{self.resolve(job)}/metrics", names=names,
                                  since_step=since_step, max_points=max_points)
        return {name: Series.from_json(name, data) for name, data in body["series"].items()}

    def checkpoints(self, job: JobRef) -> list[Checkpoint]:
        """The checkpoints the server keeps, in step order; one may be `best`."""
        return [Checkpoint.from_json(c)
                for c in self.transport.get(f"/v1/jobs/{self.resolve(job)}/checkpoints")]

    def download_checkpoint(self, job: JobRef, checkpoint_id: int | str | None = None,
                            dest: str | os.PathLike[str] = ".") -> Path:
        """Save a checkpoint and return its path: `checkpoint_id` None for the newest,
        "best" for the best, or an id from `checkpoints()`. `dest` is a folder (the file
        keeps the server's `filename`; one given with a trailing "/" is made if missing) or
        a file path. The file is streamed to a temporary file beside it and renamed into
        place only once its SHA-256 matches the listing and the `X-Checksum-Sha256` header
        (else `ChecksumMismatch`, and nothing is left)."""
        job_id = self.resolve(job)
        checkpoint = _pick(self.checkpoints(job_id), job_id, checkpoint_id)
        target = Path(dest)
        if os.fspath(dest).endswith(("/", os.sep)):  # "models/": a folder, made if need be
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TraindockError(f"cannot make the folder {target}: {exc.strerror}"
                                     ) from None
        if target.is_dir():
            target = target / Path(checkpoint.filename).name  # never a path the server chose
        if not target.parent.is_dir():
            raise TraindockError(f"cannot write into {target.parent}: no such folder; pass "
                                 "dest= an existing folder or a path in one")
        self.transport.download(f"/v1/jobs/{job_id}/checkpoints/{checkpoint.id}/download",
                                target, checkpoint.sha256,
                                what=f"checkpoint {checkpoint.id} of job {job_id}")
        return target

    def export(self, job: JobRef, format: str, checkpoint: str | int = "best",
               path: str | os.PathLike[str] | None = None) -> Path:
        """Save a checkpoint as a file that runs without traindock and return its path:
        `format` "onnx", "pt2" (torch.export.load) or "safetensors" (a zip of the weights and
        model.json); `checkpoint` "best", "last" or a step. The input normalisation is in the
        graph: feed raw inputs. `path` None saves under the server's file name in the current
        folder; a folder (one given with a trailing "/" is made) keeps that name; else the
        file path. Checked against the server's X-Checksum-Sha256 before it is kept."""
        return save_export(self.transport, self.resolve(job), format, checkpoint, path)

    def predict(self, job: JobRef, inputs: Any = None, *,
                rows: Sequence[Mapping[str, float]] | None = None,
                files: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
                checkpoint: str | int = "best") -> Predictions:
        """The job's predictions for one of: `inputs`, rows of numbers (lists, or anything
        with `.tolist()` such as a numpy array), each flat or in the input shape; `rows`,
        dicts of feature name to number (tabular datasets); `files`, a .csv with a header, an
        .npz holding `x`, or .png/.jpg images. `checkpoint`: "best", "last" or a step.
        A bad input is `Invalid` naming the field (e.g. "inputs[0] has 63 values, the model
        takes 64 (1x8x8)")."""
        given = [x is not None for x in (inputs, rows, files)]
        if sum(given) != 1:
            raise TraindockError("predict: give exactly one of inputs, rows or files")
        path = f"/v1/jobs/{self.resolve(job)}/predict"
        params = {"checkpoint": str(checkpoint)}
        if files is None:
            if inputs is not None:
                body = {"inputs": inputs.tolist() if hasattr(inputs, "tolist") else inputs}
            else:
                body = {"rows": list(rows or [])}
            return Predictions.from_json(self.transport.post(path, body, params=params))
        paths = [Path(files)] if isinstance(files, str | os.PathLike) else [Path(f) for f in files]
        try:
            parts = [("file", (p.name, p.read_bytes())) for p in paths]
        except OSError as exc:
            raise TraindockError(f"cannot read {exc.filename}: {exc.strerror}") from None
        return Predictions.from_json(
            self.transport.request("POST", path, params, files=parts).json())

    def logs(self, job: JobRef, attempt: int | None = None, tail: int | None = None,
             max_bytes: int | None = None) -> str:
        """An attempt's log (the latest by default): its last MiB unless `max_bytes`."""
        response = self.transport.request(
            "GET", f"/v1/jobs/{self.resolve(job)}/logs",
            {"attempt": attempt, "tail": tail, "max_bytes": max_bytes})
        return response.text

    @contextmanager
    def open_log(self, job: JobRef, attempt: int | None = None, tail: int | None = None,
                 follow: bool = False, max_bytes: int | None = None) -> Iterator[LogStream]:
        """An attempt's log (the latest that has one by default) as it arrives, for a caller
        that copies it elsewhere. With `follow`, what the training process writes next too,
        until the attempt ends: there is no read timeout then, as an attempt may print
        nothing for minutes (an epoch, a data load)."""
        timeout = httpx.Timeout(self.transport.timeout, read=None) if follow else None
        with self.transport.stream(f"/v1/jobs/{self.resolve(job)}/logs", timeout=timeout,
                                   attempt=attempt, tail=tail, max_bytes=max_bytes,
                                   follow="true" if follow else None) as response:
            yield LogStream(int(response.headers["x-log-attempt"]),
                            int(response.headers.get("x-log-start", "0")),
                            response.iter_bytes())

    def deliveries(self, job: JobRef) -> list[Delivery]:
        """The job's webhook events and how each delivery went."""
        return [Delivery.from_json(d)
                for d in self.transport.get(f"/v1/jobs/{self.resolve(job)}/deliveries")]

    def webhook_secret(self) -> str:
        """The `whsec_...` key deliveries are signed with (`traindock.webhooks.verify`)."""
        return self.transport.get("/v1/webhooks/secret")["secret"]

    # --- sweeps -------------------------------------------------------------------------

    def submit_sweep(self, spec: Mapping[str, Any] | os.PathLike[str],
                     idempotency_key: str | None = None) -> Sweep:
        """Create a sweep (docs/sweeps.md); `Invalid` names each field to fix, before any
        trial starts. With `idempotency_key`, a retry of the same spec returns the sweep the
        first call created instead of a second one (another spec under that key: `Conflict`)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Sweep.from_json(self.transport.post("/v1/sweeps", _spec(spec), headers=headers))

    def sweep(self, sweep: str | Sweep) -> Sweep:
        """The whole sweep, its trials included. `sweep` may be its id, a unique start of
        it, or its name (the newest sweep of that name)."""
        return Sweep.from_json(self.transport.get(f"/v1/sweeps/{self.resolve_sweep(sweep)}"))

    def sweeps(self, limit: int | None = None, page_size: int = PAGE_SIZE) -> Iterator[Sweep]:
        """The caller's sweeps newest first, page after page (keyset cursor, as `jobs`), up to
        `limit` of them."""
        for item in itertools.islice(self._pages("/v1/sweeps", page_size), limit):
            yield Sweep.from_json(item)

    def resolve_sweep(self, sweep: str | Sweep) -> str:
        if isinstance(sweep, Sweep):
            return sweep.id
        ref = sweep.strip()
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            pass
        found = list(self.sweeps())
        ids = [s.id for s in found if s.id.startswith(ref.lower())] if set(ref) <= HEX else []
        if not ids:
            ids = [s.id for s in found if s.name == ref][:1]  # newest first
        if not ids:
            raise NotFound(f"no sweep id starts with {ref!r} and none is named so; "
                           "Client.sweeps() lists them", 404)
        if len(ids) > 1:
            raise Invalid([FieldError("sweep_id", f"sweep_id: {ref!r} is the start of several "
                                      "sweep ids; give more characters")])
        return ids[0]

    def cancel_sweep(self, sweep: str | Sweep) -> Sweep:
        """Start no more trials and cancel the queued and running ones."""
        return Sweep.from_json(
            self.transport.post(f"/v1/sweeps/{self.resolve_sweep(sweep)}/cancel"))

    def delete_sweep(self, sweep: str | Sweep) -> None:
        """Delete an ended sweep with its trials' jobs."""
        self.transport.delete(f"/v1/sweeps/{self.resolve_sweep(sweep)}")

    def promote(self, sweep: str | Sweep, epochs: int | None = None) -> Job:
        """Submit the best configuration's spec as a job of its own, for `epochs` if given."""
        body = {"epochs": epochs} if epochs is not None else {}
        return Job.from_json(
            self.transport.post(f"/v1/sweeps/{self.resolve_sweep(sweep)}/promote", body))

    # --- keys and usage -----------------------------------------------------------------

    def list_keys(self) -> list[ApiKey]:
        """The owner's API keys (an admin's: all), without their tokens."""
        return [ApiKey.from_json(k) for k in self.transport.get("/v1/keys")]

    def create_key(self, name: str, scopes: list[str], owner: str | None = None,
                   expires_in_days: float | None = None) -> ApiKey:
        """A new key for this key's owner (an admin: any owner), with no scope this key lacks;
        its `token` is set in the answer only."""
        body = {"name": name, "scopes": scopes, "owner": owner,
                "expires_in_days": expires_in_days}
        return ApiKey.from_json(self.transport.post(
            "/v1/keys", {k: v for k, v in body.items() if v is not None}))

    def revoke_key(self, key: ApiKey | int) -> ApiKey:
        """Refuse the key from the next request on."""
        key_id = key.id if isinstance(key, ApiKey) else key
        return ApiKey.from_json(self.transport.request("DELETE", f"/v1/keys/{key_id}").json())

    def usage(self) -> Usage:
        """Stored bytes and active jobs of this key's owner, beside the server's limits."""
        return Usage.from_json(self.transport.get("/v1/usage"))


def _spec(spec: Mapping[str, Any] | os.PathLike[str]) -> dict[str, Any]:
    """A spec given as a mapping, or as the path of a JSON file."""
    if isinstance(spec, os.PathLike):
        path = Path(spec)
        try:
            return json.loads(path.read_text())
        except OSError as exc:
            raise TraindockError(f"cannot read the spec {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise Invalid([FieldError("body", f"body: {path} is not valid JSON ({exc}); fix "
                                      "the JSON at that line and column")], None) from None
    return dict(spec)


def _pick(checkpoints: list[Checkpoint], job_id: str, wanted: int | str | None) -> Checkpoint:
    if not checkpoints:
        raise NotFound(f"job {job_id} has no checkpoints yet; wait() for it first", 404)
    if wanted is None:
        return max(checkpoints, key=lambda c: (c.step, c.id))
    if wanted == "best":
        for checkpoint in checkpoints:
            if checkpoint.best:
                return checkpoint
        raise NotFound(f"job {job_id} has no best checkpoint: none recorded the metric it "
                       "monitors (val_loss unless its spec names another); pass None for the "
                       "newest", 404)
    for checkpoint in checkpoints:
        if str(checkpoint.id) == str(wanted):
            return checkpoint
    kept = ", ".join(f"{c.id} (step {c.step})" for c in checkpoints)
    raise NotFound(f"job {job_id} has no checkpoint {wanted}; it keeps {kept}", 404)
