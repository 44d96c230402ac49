"""One entry point for every upload format: `format_from_filename` says which format a
file is, `parse_upload` reads it into a Parsed (or raises UploadError). Pure functions of a
file on disk: no HTTP, no database. The client's file name is only ever looked at for its
suffix, never used as a path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.uploads.archive import Archive
from core.uploads.csv_format import parse_csv
from core.uploads.idx import idx_role, parse_idx
from core.uploads.images import is_image, is_skipped, parse_images
from core.uploads.npz import parse_npz
from core.uploads.options import ParseOptions
from core.uploads.parsed import Parsed, UploadError

__all__ = ["FORMATS", "ParseOptions", "format_from_filename", "parse_upload"]

PARSERS: dict[str, Callable[[Path, ParseOptions], Parsed]] = {
    "npz": parse_npz, "csv": parse_csv, "idx": parse_idx, "images": parse_images,
}
FORMATS = tuple(PARSERS)
SUFFIXES = {".npz": "npz", ".csv": "csv", ".csv.gz": "csv", ".zip": "archive",
            ".tar.gz": "archive", ".tgz": "archive"}


def parse_upload(path: Path, fmt: str, options: ParseOptions) -> Parsed:
    parser = PARSERS.get(fmt)
    if parser is None:
        raise UploadError("format", f"unknown format {fmt!r}; use one of "
                          f"{', '.join(FORMATS)}")
    return parser(path, options)


def format_from_filename(filename: str, path: Path | None = None,
                         options: ParseOptions | None = None) -> str:
    """The format for a client's file name: by suffix, and for an archive by its members
    (MNIST IDX files -> idx, image files -> images), which needs the file at `path`."""
    lowered = filename.strip().lower()
    fmt = next((fmt for suffix, fmt in sorted(SUFFIXES.items(), key=lambda kv: -len(kv[0]))
                if lowered.endswith(suffix)), None)
    if fmt is None:
        hint = (" IDX files are uploaded together in one .zip or .tar.gz;"
                if "ubyte" in lowered else "")
        raise UploadError("file", f"cannot tell the format of {filename!r} from its name;"
                          f"{hint} known suffixes are {', '.join(SUFFIXES)}")
    if fmt != "archive":
        return fmt
    if path is None:
        raise UploadError("format", f"{filename!r} is an archive; say format=idx or "
                          "format=images")
    return archive_format(path, options or ParseOptions())


def archive_format(path: Path, options: ParseOptions) -> str:
    """idx when the archive holds MNIST IDX files, images when it holds image files."""
    with Archive(path, options.max_unpacked_bytes, options.max_members) as archive:
        files = [m for m in archive.members if not m.is_dir and not is_skipped(m)]
    if any(idx_role(m.basename) for m in files):
        return "idx"
    if any(is_image(m) for m in files):
        return "images"
    raise UploadError("file", "the archive holds neither MNIST IDX files "
                      "(train-images-idx3-ubyte, ...) nor class folders of .png/.jpg images")
