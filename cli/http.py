"""The client verbs' one way to the API: an httpx client with the token, and every failure
turned into an `ApiError` that says what to do, with its exit status (1 refused, 2 unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cli.config import ConfigError, api_key_from_environment, default_url

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0

EXIT_REFUSED = 1  # the API answered no: a bad spec, an unknown job, a job that has ended
EXIT_UNREACHABLE = 2  # no answer: the API is down, too slow, or failing on its side


class ApiError(Exception):
    """A request that did not succeed; `messages` are for the user, one per line."""

    def __init__(self, messages: list[str], exit_code: int = EXIT_REFUSED) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.exit_code = exit_code


def error_messages(response: httpx.Response) -> list[str]:
    """The server's `detail`: a sentence, or for a 422 one `message` per field."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if response.status_code == 404 and detail == "Not Found":  # no such route, not no such job
        return [f"the API has no route {response.request.url.path}; is the server an older "
                "traindock than this client?"]
    if response.status_code == 401:
        sent = "the key sent" if response.request.headers.get("authorization") else "no key"
        return [str(detail or "the API asks for an API key"),
                f"({sent}: pass --token, or set TRAINDOCK_API_KEY, or api_key in "
                "~/.config/traindock/config.toml)"]
    if isinstance(detail, list):
        return [str(item.get("message", item)) if isinstance(item, dict) else str(item)
                for item in detail]
    if detail:
        return [str(detail)]
    reason = response.reason_phrase or "error"
    return [f"the API answered {response.status_code} {reason} to {response.request.url}"]


class Api:
    """The API at `url`. Paths are relative (`/v1/jobs`); bodies are decoded JSON."""

    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params or None).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self._send("POST", path, json=body, params=params or None).json()

    def upload(self, path: str, file: Path, fields: dict[str, str], timeout: float) -> Any:
        """POST a file as multipart form data; httpx reads it in chunks as it sends."""
        with open(file, "rb") as handle:
            return self._send("POST", path, files={"file": (file.name, handle)}, data=fields,
                              timeout=timeout).json()

    def delete(self, path: str) -> None:
        self._send("DELETE", path)

    @contextmanager
    def stream(self, path: str, timeout: float | httpx.Timeout = TIMEOUT_S, **params: Any
               ) -> Iterator[httpx.Response]:
        """A response whose body is read in chunks (CSV, checkpoint files, logs)."""
        with self._translated(), self.http.stream("GET", path, params=params or None,
                                                  timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            yield response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._translated():
            response = self.http.request(method, path, **kwargs)
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            raise ApiError(error_messages(response), EXIT_UNREACHABLE)
        if response.status_code >= 400:
            raise ApiError(error_messages(response), EXIT_REFUSED)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError:
            raise ApiError([f"cannot reach the traindock API at {self.url}: is `traindock up` "
                            "running? (--url to point elsewhere)"], EXIT_UNREACHABLE) from None
        except httpx.TimeoutException:
            raise ApiError([f"the traindock API at {self.url} did not answer within "
                            f"{TIMEOUT_S:.0f} s; try again"], EXIT_UNREACHABLE) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise ApiError([f"{self.url} is not an http(s) URL; pass --url like {DEFAULT_URL}"],
                           EXIT_UNREACHABLE) from None
        except httpx.TransportError as exc:
            raise ApiError([f"the connection to the traindock API at {self.url} failed: {exc}"],
                           EXIT_UNREACHABLE) from None


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=default_url(DEFAULT_URL),
                        help="the API (default: $TRAINDOCK_URL, else `url` in the config file, "
                        f"else {DEFAULT_URL})")
    parser.add_argument("--token", "--api-key", dest="token", default=None,
                        help="the API key, sent as 'Authorization: Bearer KEY' (default: "
                        "$TRAINDOCK_API_KEY, else `api_key` in $TRAINDOCK_CONFIG or "
                        "~/.config/traindock/config.toml)")


def run_client_verb(verb: Callable[[Api, argparse.Namespace], int],
                    args: argparse.Namespace) -> int:
    """Run a verb against the API; an expected failure is a message and an exit status,
    never a traceback."""
    try:
        with Api(args.url, args.token or api_key_from_environment()) as api:
            return verb(api, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ApiError as exc:
        for message in exc.messages:
            print(f"error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `traindock ls | head`: the reader left; say nothing more, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
