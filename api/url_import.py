"""Download a dataset from an http(s) URL to a file on disk: a size cap, a timeout per wait,
an overall deadline, and the address policy of core/net_policy.py (no loopback, private,
link-local, ... hosts unless a setting allows them).

Against server-side request forgery: the host is resolved once, checked, and the connection
goes to that checked address (TLS still verifies the name); redirects are followed by hand,
at most MAX_REDIRECTS, each one checked the same way; credentials in the URL are never
stored or shown (`public_url`); and what goes wrong is said without the remote server's
words and without telling a closed port from a silent one ("could not fetch").
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from starlette.concurrency import run_in_threadpool

from api.uploads import WRITE_BATCH
from core.net_policy import AddressRefused, NetPolicy, resolve_checked
from core.uploads.parsed import UploadError

SCHEMES = ("http", "https")
MAX_REDIRECTS = 3
# Query parameters whose values are secrets (signed URLs, API tokens): kept for the fetch,
# never stored or shown.
SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "secret", "password",
                 "passwd", "sig", "signature", "x-amz-signature", "x-amz-credential",
                 "x-amz-security-token", "x-goog-signature", "x-goog-credential", "auth")
REDACTED = "REDACTED"


def check_url(url: str) -> str:
    """The URL, if it is one traindock may fetch; 422 naming `url` otherwise."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UploadError("url", f"is not a valid URL ({public_url(url)!r})") from None
    if parts.scheme.lower() not in SCHEMES or not hostname:
        raise UploadError("url", f"must be an http:// or https:// URL with a host (got "
                          f"{public_url(url)!r})")
    return url


def public_url(url: str) -> str:
    """The URL as it may be stored and shown: no user:password@, secret query values
    replaced by REDACTED."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = urlencode([(k, REDACTED if k.lower() in SECRET_PARAMS else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)])
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(not a URL)"


def filename_of(url: str) -> str:
    """The last segment of the URL's path (`data.csv.gz`), which tells the format."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _too_large(url: str, max_bytes: int) -> UploadError:
    return UploadError(
        "url", f"{public_url(url)} sends more than the limit of {max_bytes} bytes "
        "(TRAINDOCK_MAX_UPLOAD_BYTES); nothing was kept", status=413,
    )


def import_parse_error(exc: UploadError, url: str) -> UploadError:
    """A refusal of an imported file, said without its content: the file belongs to whoever
    serves it, and an error that quoted it (its column names, its member names) would let a
    caller read what the server can reach. Uploading the file directly says what is wrong."""
    if exc.status == 413:
        why = ("it is larger, once unpacked or parsed, than a limit allows "
               "(TRAINDOCK_MAX_UNPACKED_BYTES, TRAINDOCK_MAX_PARSED_BYTES or "
               "TRAINDOCK_INGEST_MEMORY_MB)")
    else:
        why = "it is not a dataset in a format traindock reads (npz, csv, idx, images)"
    return UploadError("url", f"the file at {public_url(url)} was refused: {why}; upload it "
                       "directly (multipart) to be told what to change", status=exc.status)


def _could_not_fetch(url: str, why: str = "") -> UploadError:
    return UploadError("url", f"could not fetch {public_url(url)}{why}; check that the URL "
                       "is right and reachable from the traindock server")


async def download(url: str, out_path: Path, max_bytes: int, timeout_s: float,
                   policy: NetPolicy | None = None, deadline_s: float = 300.0) -> int:
    """Stream `url` into `out_path`; returns the bytes written. The caller deletes the file
    whatever happens."""
    check_url(url)
    policy = policy or NetPolicy()
    receiving: list[bool] = []  # set once a 200 answer's body is being read
    try:
        async with asyncio.timeout(deadline_s):
            return await _follow(url, out_path, max_bytes, timeout_s, policy, receiving)
    except TimeoutError:
        if not receiving:  # a silent port reads like a closed one
            raise _could_not_fetch(url) from None
        raise UploadError("url", f"{public_url(url)} was not downloaded within {deadline_s:g} s "
                          "(TRAINDOCK_IMPORT_DEADLINE_S); nothing was kept") from None


async def _follow(url: str, out_path: Path, max_bytes: int, timeout_s: float,
                  policy: NetPolicy, receiving: list[bool]) -> int:
    origin = _origin(url)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                 trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = await _request(client, url, policy, send_credentials=_origin(url) == origin)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError:
                raise _could_not_fetch(url) from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise _could_not_fetch(url, ": a redirect without a location")
                    url = check_url(urljoin(url, location))
                    continue
                if not response.is_success:
                    raise _could_not_fetch(url, f": it answered HTTP {response.status_code}, "
                                           "not 200 with the file")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(url, max_bytes)
                receiving.append(True)
                return await _save(response, url, out_path, max_bytes)
            except httpx.HTTPError:
                raise _could_not_fetch(url, ": the transfer broke off") from None
            finally:
                await response.aclose()
    raise UploadError("url", f"{public_url(url)} redirects more than {MAX_REDIRECTS} times; "
                      "give the final URL")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


async def _request(client: httpx.AsyncClient, url: str, policy: NetPolicy,
                   send_credentials: bool) -> httpx.Request:
    """A request to the address the policy checked, for the host the URL names."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        address = await run_in_threadpool(resolve_checked, host, port, policy)
    except AddressRefused as exc:
        raise UploadError("url", f"{public_url(url)}: {exc}") from None
    target = httpx.URL(urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path,
                                   parts.query, ""))).copy_with(host=str(address))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host and parts.port is not None:
        host_header = f"[{host}]:{parts.port}"
    headers = {"host": host_header, "accept-encoding": "identity"}
    if send_credentials and parts.username is not None:
        secret = f"{parts.username}:{parts.password or ''}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(secret).decode()
    # sni_hostname: TLS verifies the certificate for the name, not for the address
    return client.build_request("GET", target, headers=headers,
                                extensions={"sni_hostname": host})


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
