"""Counting what an upload inflates to, so that a zip bomb or a lying header is refused
with a 413 that names the cap, before it costs the memory or disk it claims."""

from __future__ import annotations

import math

from core.uploads.parsed import UploadError

UNPACKED_SETTING = "TRAINDOCK_MAX_UNPACKED_BYTES"


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def too_big(cap: int, what: str = "the upload") -> UploadError:
    return UploadError("file", f"{what} unpacks to more than {human_bytes(cap)}, the limit "
                       f"({UNPACKED_SETTING}); upload less data at once", status=413)


class Budget:
    """The bytes one upload may inflate to. Archives declare sizes (checked first, before
    anything is inflated) and then every byte actually read is charged too, since a
    header can lie."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0

    def check_declared(self, total: int, what: str = "the archive") -> None:
        if total > self.cap:
            raise too_big(self.cap, what)

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise too_big(self.cap)

    @property
    def left(self) -> int:
        return self.cap - self.used


def check_parsed_bytes(shape: tuple[int, ...], cap: int, what: str) -> None:
    """Refuse float32 arrays that would be too large before allocating them."""
    size = math.prod(shape) * 4
    if size > cap:
        raise UploadError("file", f"{what} would take {human_bytes(size)} as float32 "
                          f"{tuple(shape)}, above the limit of {human_bytes(cap)}; upload "
                          "less data (or smaller images)", status=413)
