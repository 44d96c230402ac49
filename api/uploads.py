"""Receive a dataset upload: a multipart body streamed straight to a file on disk, counted as
the bytes arrive, so that neither a large body nor a lying Content-Length ever sits in memory.

Only the `file` part goes to disk; the other parts are small text fields (name, target, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool

from core.uploads.parsed import UploadError

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # a text field (name, target column, ...) is never near this
MAX_PARTS = 32
WRITE_BATCH = 1 << 20  # hand the disk 1 MiB at a time, from a thread: the loop never blocks on it


def too_large(max_bytes: int) -> UploadError:
    return UploadError(
        "file", f"the upload is larger than the limit of {max_bytes} bytes "
        "(TRAINDOCK_MAX_UPLOAD_BYTES); send a smaller file or ask for a higher limit", status=413,
    )


async def capped(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Pass the chunks through; 413 as soon as more than `max_bytes` have arrived."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        yield chunk


@dataclass
class _Part:
    disposition: bytes = b""
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Received:
    """What a multipart upload carried: the text fields, and the client's name for the file
    (used to tell its format and recorded as its source, never as a path)."""

    fields: dict[str, str]
    filename: str | None
    file_bytes: int


class _Collector:
    """python-multipart callbacks: text parts into memory, the file part into `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_seen = False
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.file_bytes = 0
        self.parts = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadError("body", f"more than {MAX_PARTS} form fields; send `file`, `name` "
                              "and the options only")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.part.disposition = self.header_value
            _, options = parse_options_header(self.header_value)
            self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in options:
                self.part.filename = options[b"filename"].decode("utf-8", "replace")
        self.header_name = self.header_value = b""

    def _is_file(self) -> bool:
        return self.part.name == FILE_FIELD

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file():
            chunk = bytes(data[start:end])
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
            self.file_bytes += len(chunk)
            return
        if len(self.part.data) + (end - start) > MAX_FIELD_BYTES:
            raise UploadError(self.part.name or "body",
                              f"form field longer than {MAX_FIELD_BYTES} bytes")
        self.part.data.extend(data[start:end])

    def on_part_end(self) -> None:
        if not self.part.name:
            raise UploadError("body", "a form part has no name in its Content-Disposition")
        if self._is_file():
            if self.file_seen:
                raise UploadError("file", "sent twice; upload one file per dataset")
            self.file_seen = True
            self.filename = self.part.filename
            return
        if self.part.name in self.fields:
            raise UploadError(self.part.name, "sent twice; send each form field once")
        try:
            self.fields[self.part.name] = self.part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError(self.part.name, "is not UTF-8 text") from None

    def take_pending(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return data


async def receive_multipart(
    content_type: str, chunks: AsyncIterator[bytes], out_path: Path, max_bytes: int
) -> Received:
    """Parse a multipart/form-data body from `chunks`, writing the `file` part to `out_path`.
    Raises UploadError: 413 past `max_bytes` of body, 422 for a malformed body or no file.
    The caller deletes `out_path` whatever happens."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError("body", "multipart/form-data without a boundary; let the HTTP "
                          "client build the form (e.g. curl -F file=@data.npz -F name=...)")
    with open(out_path, "wb") as out:
        collector = _Collector(out)
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in capped(chunks, max_bytes):
            try:
                parser.write(chunk)
            except UploadError:
                raise
            except Exception as exc:  # python-multipart's FormParserError and friends
                raise UploadError("body", f"not a valid multipart/form-data body ({exc})") from None
            if collector.pending_bytes >= WRITE_BATCH:
                await run_in_threadpool(out.write, collector.take_pending())
        if parser.state not in (MultipartState.END, MultipartState.BOUNDARY_PADDING):
            raise UploadError("body", "the multipart body ends before its closing boundary; "
                              "the upload was cut off, send it again")
        if collector.pending_bytes:
            await run_in_threadpool(out.write, collector.take_pending())
    if not collector.file_seen:
        raise UploadError("file", "required: send the data as the form field `file` "
                          "(e.g. curl -F file=@data.npz)")
    return Received(collector.fields, collector.filename, collector.file_bytes)
