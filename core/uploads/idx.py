"""MNIST's IDX format, uploaded as one .zip or .tar.gz holding train-images-idx3-ubyte and
train-labels-idx1-ubyte, and optionally t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte
(each possibly gzipped, possibly under a folder; `train-images.idx3-ubyte` spelt with a dot
too). Images become float32 (n, 1, H, W) holding 0..255 (the job's normalisation scales
them); t10k becomes the test split. Other members (a README, __MACOSX) are skipped, noted."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np

from core.uploads.archive import Archive, CappedReader, Member, maybe_gunzip, read_exactly
from core.uploads.limits import check_parsed_bytes, too_big
from core.uploads.options import ParseOptions
from core.uploads.parsed import Parsed, UploadError
from core.uploads.validate import check_splits, classification_labels

_NAME = re.compile(r"(train|t10k)-(images|labels)[-.]idx[13]-ubyte(\.gz)?")
SPLIT_OF = {"train": "train", "t10k": "test"}
# IDX type codes: the data's dtype, big-endian
DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
USUAL_NAMES = "train-images-idx3-ubyte, train-labels-idx1-ubyte"


def idx_role(name: str) -> tuple[str, str] | None:
    """("train" | "t10k", "images" | "labels") for an IDX member's base name."""
    match = _NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def parse_idx(path: Path, options: ParseOptions) -> Parsed:
    with Archive(path, options.max_unpacked_bytes, options.max_members) as archive:
        roles = _roles(archive.members)
        others = [m.name for m in archive.members if not m.is_dir and m not in roles.values()]
        notes = [f"skipped {len(others)} archive member(s) that are not MNIST IDX files, "
                 f"e.g. {others[0]}"] if others else []
        for required in ("images", "labels"):
            if ("train", required) not in roles:
                raise UploadError("file", f"holds no train-{required} IDX file; an MNIST "
                                  f"archive holds {USUAL_NAMES} (and optionally the t10k "
                                  "ones)")
        if (("t10k", "images") in roles) != (("t10k", "labels") in roles):
            raise UploadError("file", "holds only one of t10k-images and t10k-labels; give "
                              "both or neither")
        # read in archive order: a tar.gz is cheap to read forward only
        arrays = {role: _read_idx(archive, member, options)
                  for role, member in sorted(roles.items(), key=lambda kv: kv[1].index)}
    splits: dict[str, np.ndarray] = {}
    for prefix, split in SPLIT_OF.items():
        if (prefix, "images") not in arrays:
            continue
        images, labels = arrays[(prefix, "images")], arrays[(prefix, "labels")]
        name = roles[(prefix, "images")].name
        if images.ndim != 3:
            raise UploadError(f"file: {name}", f"has {images.ndim} dimensions; IDX images are "
                              "(n, height, width)")
        label_name = roles[(prefix, "labels")].name
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise UploadError(f"file: {label_name}", "is not a 1-dimensional integer IDX file; "
                              "labels are one integer per image")
        if len(images) != len(labels):
            raise UploadError(f"file: {label_name}", f"holds {len(labels):,} labels but "
                              f"{name} holds {len(images):,} images; they must match")
        splits[f"x_{split}"] = images.astype(np.float32)[:, None, :, :]
        splits[f"y_{split}"] = classification_labels(labels, f"file: {label_name}", notes)
    if "x_test" in splits and splits["x_test"].shape[1:] != splits["x_train"].shape[1:]:
        raise UploadError("file", f"t10k images are {splits['x_test'].shape[2:]} but train "
                          f"images are {splits['x_train'].shape[2:]}; they must match")
    return check_splits(Parsed(task="classification", notes=notes, **splits))


def _roles(members: list[Member]) -> dict[tuple[str, str], Member]:
    roles: dict[tuple[str, str], Member] = {}
    for member in members:
        role = None if member.is_dir or "__MACOSX" in member.parts else idx_role(
            member.basename)
        if role is None:
            continue
        if role in roles:
            raise UploadError("file", f"holds two {'-'.join(role)} files ({roles[role].name} "
                              f"and {member.name}); keep one")
        roles[role] = member
    return roles


def _read_idx(archive: Archive, member: Member, options: ParseOptions) -> np.ndarray:
    field = f"file: {member.name}"
    with archive.open(member) as raw:
        stream = maybe_gunzip(raw, archive.budget, member.name)
        head = read_exactly(stream, 4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in DTYPES or head[3] == 0:
            raise UploadError(field, f"is not an IDX file (its first bytes are {head.hex()}, "
                              "not 0000 <type> <dims>)")
        dtype, ndim = DTYPES[head[2]], head[3]
        dims_bytes = read_exactly(stream, 4 * ndim)
        if len(dims_bytes) < 4 * ndim:
            raise UploadError(field, "ends inside its header; the file is truncated")
        dims = struct.unpack(f">{ndim}I", dims_bytes)
        needed = math.prod(dims) * dtype.itemsize
        held = member.size - 4 - 4 * ndim  # known when the member is not gzipped
        if not isinstance(stream, CappedReader) and needed > held:
            raise UploadError(field, f"header declares dims {dims} ({needed:,} bytes of data) "
                              f"but the file holds only {held:,}; it is truncated")
        if needed > archive.budget.left:
            raise too_big(archive.budget.cap, f"{member.name} (header dims {dims})")
        check_parsed_bytes(dims, options.max_parsed_bytes, member.name)
        data = read_exactly(stream, needed)
        if len(data) < needed:
            raise UploadError(field, f"header declares dims {dims} ({needed:,} bytes of data) "
                              f"but the file holds only {len(data):,}; it is truncated")
        if stream.read(1):
            raise UploadError(field, f"holds more data than its header declares (dims {dims}); "
                              "the dims are wrong or the file is damaged")
    return np.frombuffer(data, dtype=dtype).reshape(dims)
