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

    def __init__(self, cap: int, why: str | None = None) -> None:
        self.cap = cap
        self.used = 0
        self.why = why  # said instead of the setting when the cap is not the setting's

    def _refuse(self) -> UploadError:
        if self.why is None:
            return too_big(self.cap)
        return UploadError("file", f"the upload unpacks to more than {human_bytes(self.cap)}: "
                           f"{self.why}", status=413)

    def check_declared(self, total: int, what: str = "the archive") -> None:
        if total > self.cap:
            raise too_big(self.cap, what)

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise self._refuse()

    @property
    def left(self) -> int:
        return self.cap - self.used


PARSED_SETTING = "TRAINDOCK_MAX_PARSED_BYTES"


def check_parsed_bytes(shape: tuple[int, ...], cap: int, what: str, itemsize: int = 4,
                       field: str = "file") -> None:
    """Refuse arrays that would be too large before allocating them (float32 features by
    default; int64 labels with itemsize=8)."""
    size = math.prod(int(side) for side in shape) * itemsize
    if size > cap:
        kind = "float32" if itemsize == 4 else f"{itemsize}-byte values"
        raise UploadError(field, f"{what} would take {human_bytes(size)} as {kind} "
                          f"{tuple(int(side) for side in shape)}, above the limit of "
                          f"{human_bytes(cap)} ({PARSED_SETTING}); upload less data (or "
                          "smaller images)", status=413)
