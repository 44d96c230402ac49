"""What the uploader may choose when a file is parsed, and the caps that keep a hostile file
from costing more than it should. The API builds one from the request and its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.uploads.parsed import UploadError, UploadTask

Color = Literal["grayscale", "rgb"]
GiB = 1 << 30
MAX_IMAGE_SIDE = 4096
# Pillow's own default (Image.MAX_IMAGE_PIXELS), repeated so that this module needs no Pillow.
PILLOW_MAX_IMAGE_PIXELS = 89_478_485


@dataclass(frozen=True)
class ParseOptions:
    """How to read one upload. Every field has a default that suits most files."""

    # csv: the column to predict; None means the last column.
    target: str | None = None
    # None infers it: integer or categorical targets are classification, floats regression.
    task: UploadTask | None = None
    # image folders: (height, width) to resize to; None keeps the images' own size, which
    # must then be the same for all of them.
    image_size: tuple[int, int] | None = None
    # image folders: "rgb" keeps colour (3, H, W); "grayscale" gives (1, H, W).
    color: Color = "rgb"
    # zip-bomb cap: bytes that an archive or gzip may inflate to, declared and actually read
    # (TRAINDOCK_MAX_UNPACKED_BYTES).
    max_unpacked_bytes: int = 4 * GiB
    max_members: int = 200_000
    # the float32 arrays parsing makes (a small JPEG resized large, uint8 read as float32).
    max_parsed_bytes: int = 8 * GiB
    # decompression-bomb cap for one image, width * height.
    max_image_pixels: int = PILLOW_MAX_IMAGE_PIXELS
    # a folder of the caller's where large feature arrays are built on disk rather than in
    # memory (see core/array_chunks.py NpyWriter); None: in memory.
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.task not in (None, "classification", "regression"):
            raise UploadError("task", f"unknown task {self.task!r}; use classification or "
                              "regression, or leave it out to infer it from the target")
        if self.color not in ("grayscale", "rgb"):
            raise UploadError("color", f"unknown color {self.color!r}; use grayscale or rgb")
        if self.target is not None and not self.target.strip():
            raise UploadError("target", "is empty; name a column, or leave it out for the last")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(
                isinstance(side, int) and 1 <= side <= MAX_IMAGE_SIDE for side in size
            ):
                raise UploadError("image_size", f"{self.image_size!r} is not (height, width) "
                                  f"with each side an integer 1..{MAX_IMAGE_SIDE}")
            object.__setattr__(self, "image_size", size)
        for name in ("max_unpacked_bytes", "max_members", "max_parsed_bytes",
                     "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")  # a setting, not user input
