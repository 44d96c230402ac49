"""The one way to the API: an httpx client with the API key, paths relative to the API's
URL, and every failure turned into a `traindock.errors` exception that says what to do. The
typed `Client` is built on it, and so is the `traindock` terminal client (cli/http.py), which
words the same exceptions in its own terms."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from traindock.errors import (
    ChecksumMismatch,
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    TraindockError,
    Unauthorized,
    Unavailable,
    field_errors,
)

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0


def default_url() -> str:
    return os.environ.get("TRAINDOCK_URL") or DEFAULT_URL


def default_api_key() -> str | None:
    return os.environ.get("TRAINDOCK_API_KEY") or None


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def error_for(response: httpx.Response) -> TraindockError:
    """The exception for an answer of 400 or more, carrying the answer and its `detail`."""
    detail = _detail(response)
    error = _error_for(response, detail)
    error.response, error.detail = response, detail
    return error


def _error_for(response: httpx.Response, detail: Any) -> TraindockError:
    status = response.status_code
    if isinstance(detail, list):  # a 422 (or a 413/415 shaped like one): one item per field
        errors = field_errors(detail)
        if 400 <= status < 500 and status not in (401, 403, 404, 409, 410, 429):
            return Invalid(errors, status)
        messages = [e.message for e in errors]
    elif status == 404 and detail in (None, "Not Found"):  # no such route, not no such job
        messages = [f"the API has no route {response.request.url.path}; is the server an "
                    "older traindock than this client?"]
    elif detail:
        messages = [str(detail)]
    else:
        messages = [f"the API answered {status} {response.reason_phrase or 'error'} to "
                    f"{response.request.method} {response.request.url}"]
    if status in (404, 410):
        return NotFound(messages, status)
    if status == 409:
        return Conflict(messages, status)
    if status in (401, 403):
        return Unauthorized(messages + ["pass api_key= or set TRAINDOCK_API_KEY to a key "
                                        "this API accepts"], status)
    if status == 429 or status >= 500:
        retry = _retry_after(response)
        hint = f"; retry after {retry:g} s" if retry is not None else "; try again shortly"
        return Unavailable([m + hint for m in messages] if status != 503 else messages,
                           status, retry)
    if 400 <= status < 500:
        return Invalid([FieldError("", m) for m in messages], status)
    return TraindockError(messages, status)


class Transport:
    """The API at `url`. Paths are relative (`/v1/jobs`); JSON bodies are decoded; params
    that are None are left out."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        self.url = (default_url() if url is None else url).rstrip("/")
        self.timeout = timeout
        headers = {"user-agent": "traindock-client"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                **kwargs: Any) -> httpx.Response:
        """The answer, once it is a success (below 400); raises otherwise."""
        with self.translated():
            response = self.http.request(method, path, params=_present(params), **kwargs)
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params).json()

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        response = self.request("POST", path, params, json=body, headers=headers)
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def upload(self, path: str, file: Path, fields: dict[str, str],
               timeout: float | None = None) -> Any:
        """POST a file as multipart form data; httpx reads it in chunks as it sends."""
        try:
            handle = open(file, "rb")  # noqa: SIM115 - closed below, after the request
        except OSError as exc:
            raise TraindockError(f"cannot read {file}: {exc.strerror}") from None
        with handle:
            return self.request("POST", path, files={"file": (file.name, handle)}, data=fields,
                                timeout=self.timeout if timeout is None else timeout).json()

    @contextmanager
    def stream(self, path: str, timeout: float | httpx.Timeout | None = None, **params: Any
               ) -> Iterator[httpx.Response]:
        """A successful answer whose body is read in chunks (files, logs, CSV)."""
        with self.translated(), self.http.stream(
                "GET", path, params=_present(params),
                timeout=self.timeout if timeout is None else timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response)
            yield response

    def download(self, path: str, target: Path, sha256: str | None = None,
                 what: str | None = None) -> str:
        """Save the body of GET `path` as the file `target` and return its SHA-256, checked
        as `save_verified` says. `what` names it in messages."""
        with self.stream(path) as response:
            return save_verified(response, target, sha256, what or path)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """httpx's exceptions as `Unavailable` (or `TraindockError` for a bad URL), with httpx's
        as their `__cause__`: what exactly failed, for a log or for a caller's own wording."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise Unavailable(f"cannot reach the traindock API at {self.url} ({exc}); is it "
                              "running? Pass url= or set TRAINDOCK_URL to point elsewhere"
                              ) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(f"the traindock API at {self.url} did not answer within "
                              f"{self.timeout:g} s; try again, or pass a larger timeout="
                              ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise TraindockError(f"{self.url!r} is not an http(s) URL; pass url= like "
                                 f"{DEFAULT_URL}") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"the connection to the traindock API at {self.url} failed: "
                              f"{type(exc).__name__}: {exc}; try again") from exc


def _present(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None} or None


def save_verified(response: httpx.Response, target: Path, sha256: str | None = None,
                  what: str = "the download") -> str:
    """Stream a response's body to a temporary file beside `target`, rename it into place
    only once its SHA-256 is `sha256` (when given) and the X-Checksum-Sha256 header's (when
    sent), and return it; otherwise `ChecksumMismatch`, and nothing is left. Shared by
    downloads (checkpoints) and exports."""
    header = response.headers.get("x-checksum-sha256")
    try:
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                           suffix=".part")
    except OSError as exc:
        raise TraindockError(f"cannot write {target}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        for source, expected in (("the X-Checksum-Sha256 header", header),
                                 ("the listing", sha256)):
            if expected is not None and actual != expected:
                raise ChecksumMismatch(
                    f"{what}: the download's sha256 {actual} is not {source}'s {expected} "
                    "(a broken transfer?); nothing was saved, try again",
                    actual, sha256, header)
        os.replace(partial, target)
    except OSError as exc:
        raise TraindockError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        Path(partial).unlink(missing_ok=True)
    return actual
