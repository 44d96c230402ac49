"""The client verbs' way to the API: the Python client's `traindock.transport.Transport` (one
HTTP stack for both), with its failures worded for a terminal. The Python client's messages
give advice in its own terms (url=, api_key=); here it is in the CLI's (--url, --token, the
config file), with an exit status: 1 refused, 2 unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import httpx

from cli.config import ConfigError, api_key_from_environment, default_url
from traindock.errors import TraindockError, field_errors
from traindock.transport import DEFAULT_URL, TIMEOUT_S, Transport

EXIT_REFUSED = 1  # the API answered no: a bad spec, an unknown job, a job that has ended
EXIT_UNREACHABLE = 2  # no answer: the API is down, too slow, or failing on its side


class ApiError(Exception):
    """A refusal of the terminal client's own (a file that exists, an ambiguous job id);
    `messages` are for the user, one per line."""

    def __init__(self, messages: list[str], exit_code: int = EXIT_REFUSED) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.exit_code = exit_code


def error_messages(error: TraindockError, url: str) -> tuple[list[str], int]:
    """What to tell the user about a failed request, one line each, and the exit status."""
    cause, response = error.__cause__, error.response
    if response is None:
        if isinstance(cause, httpx.ConnectError):
            return [f"cannot reach the traindock API at {url}: is `traindock up` running? "
                    "(--url to point elsewhere)"], EXIT_UNREACHABLE
        if isinstance(cause, httpx.TimeoutException):
            return [f"the traindock API at {url} did not answer within {TIMEOUT_S:.0f} s; try "
                    "again"], EXIT_UNREACHABLE
        if isinstance(cause, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return [f"{url} is not an http(s) URL; pass --url like {DEFAULT_URL}"
                    ], EXIT_UNREACHABLE
        if isinstance(cause, httpx.TransportError):
            return [f"the connection to the traindock API at {url} failed: {cause}"
                    ], EXIT_UNREACHABLE
        return error.messages, EXIT_REFUSED  # e.g. a file to upload that cannot be read
    status, detail = response.status_code, error.detail
    exit_code = EXIT_UNREACHABLE if status >= 500 else EXIT_REFUSED
    if status == 404 and detail == "Not Found":  # no such route: the client's words say so
        return error.messages, exit_code
    if status == 401:
        sent = "the key sent" if response.request.headers.get("authorization") else "no key"
        return [str(detail or "the API asks for an API key"),
                f"({sent}: pass --token, or set TRAINDOCK_API_KEY, or api_key in "
                "~/.config/traindock/config.toml)"], exit_code
    if isinstance(detail, list):
        return [e.message for e in field_errors(detail)], exit_code
    if detail:
        return [str(detail)], exit_code
    reason = response.reason_phrase or "error"
    return [f"the API answered {status} {reason} to {response.request.url}"], exit_code


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=default_url(DEFAULT_URL),
                        help="the API (default: $TRAINDOCK_URL, else `url` in the config file, "
                        f"else {DEFAULT_URL})")
    parser.add_argument("--token", "--api-key", dest="token", default=None,
                        help="the API key, sent as 'Authorization: Bearer KEY' (default: "
                        "$TRAINDOCK_API_KEY, else `api_key` in $TRAINDOCK_CONFIG or "
                        "~/.config/traindock/config.toml)")


def run_client_verb(verb: Callable[[Transport, argparse.Namespace], int],
                    args: argparse.Namespace) -> int:
    """Run a verb against the API; an expected failure is a message and an exit status,
    never a traceback."""
    url = args.url.rstrip("/")
    try:
        with Transport(url, args.token or api_key_from_environment()) as api:
            return verb(api, args)
    except ConfigError as exc:
        return _fail([str(exc)], EXIT_REFUSED)
    except ApiError as exc:
        return _fail(exc.messages, exc.exit_code)
    except TraindockError as exc:
        return _fail(*error_messages(exc, url))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `traindock ls | head`: the reader left; say nothing more, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _fail(messages: list[str], exit_code: int) -> int:
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return exit_code
