"""The API <-> prediction server wire format, over a pair of pipes: each message is two
big-endian uint32 lengths (a JSON header's, a raw payload's), then the header, then the
payload. The payload carries request bodies and files untouched, so nothing is encoded twice.
Torch-free: the API side imports it."""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

LENGTHS = struct.Struct(">II")


def encode_message(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return LENGTHS.pack(len(head), len(payload)) + head + payload


def write_message(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    stream.write(encode_message(header, payload))
    stream.flush()


def read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other end closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], bytes]:
    head_len, payload_len = LENGTHS.unpack(read_exactly(stream, LENGTHS.size))
    header = json.loads(read_exactly(stream, head_len))
    payload = read_exactly(stream, payload_len) if payload_len else b""
    return header, payload
