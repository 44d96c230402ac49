"""Download a dataset from an http(s) URL to a file on disk, with a size cap and a timeout.

Whatever goes wrong is an UploadError naming `url`: an unreachable host, a non-2xx answer, a
server that stalls, or one that sends more than the cap (413, cut off as the bytes arrive).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.concurrency import run_in_threadpool

from api.uploads import WRITE_BATCH
from core.uploads.parsed import UploadError

SCHEMES = ("http", "https")


def check_url(url: str) -> str:
    """The URL, if it is one traindock may fetch; 422 naming `url` otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise UploadError("url", f"must be an http:// or https:// URL with a host (got {url!r})")
    return url


def filename_of(url: str) -> str:
    """The last segment of the URL's path (`data.csv.gz`), which tells the format."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _too_large(url: str, max_bytes: int) -> UploadError:
    return UploadError(
        "url", f"{url} sends more than the limit of {max_bytes} bytes "
        "(TRAINDOCK_MAX_UPLOAD_BYTES); nothing was kept", status=413,
    )


async def download(url: str, out_path: Path, max_bytes: int, timeout_s: float) -> int:
    """Stream `url` into `out_path`; returns the bytes written. The caller deletes the file
    whatever happens."""
    check_url(url)
    timeout = httpx.Timeout(timeout_s)
    try:
        # identity: the file as stored, not a gzip transfer encoding of it
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=5) as client,
            client.stream("GET", url, headers={"accept-encoding": "identity"}) as response,
        ):
            if not response.is_success:
                raise UploadError(
                    "url", f"{url} answered {response.status_code} "
                    f"{response.reason_phrase}; expected 200 with the file")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(url, max_bytes)
            return await _save(response, url, out_path, max_bytes)
    except httpx.TimeoutException:
        raise UploadError("url", f"{url} did not answer within {timeout_s:g} s "
                          "(TRAINDOCK_IMPORT_TIMEOUT_S)") from None
    except httpx.HTTPError as exc:
        raise UploadError("url", f"could not download {url}: {type(exc).__name__}: "
                          f"{exc or 'no detail'}") from None


async def _save(response: httpx.Response, url: str, out_path: Path, max_bytes: int) -> int:
    received = 0
    with open(out_path, "wb") as out:
        # aiter_raw: the bytes as sent, never inflated here; a .gz file is unpacked (and
        # capped) by the parser.
        async for chunk in response.aiter_raw(WRITE_BATCH):
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(url, max_bytes)
            await run_in_threadpool(out.write, chunk)
    return received
