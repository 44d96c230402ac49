"""`.npz` uploads (numpy.savez): x_train, y_train and optionally x_val, y_val, x_test,
y_test, and the names of the classes and of the features as arrays of strings
(`class_names`, `feature_names`). Each member's .npy header is read and checked against the
member's size before any data is read; then the data is read in chunks straight into
float32 (features) so that a large file needs little more memory than its result. Nothing
is ever unpickled: an object array is refused from its header alone (stricter than
np.load(allow_pickle=False), and the same answer)."""

from __future__ import annotations

import math

import numpy as np

from core.array_chunks import NpyWriter
from core.uploads.archive import Archive, CappedReader, Member, read_exactly
from core.uploads.limits import check_parsed_bytes
from core.uploads.options import ParseOptions
from core.uploads.parsed import SPLITS, Parsed, UploadError
from core.uploads.validate import check_splits, classification_labels, regression_targets

MEMBERS = tuple(f"{kind}_{split}" for split in SPLITS for kind in ("x", "y"))
NAME_MEMBERS = ("class_names", "feature_names")
MAX_NAMES = 65_536  # as many as a csv may have columns
MAX_NAME_CHARS = 256
CHUNK_BYTES = 16 << 20
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


def parse_npz(path, options: ParseOptions) -> Parsed:
    with Archive(path, options.max_unpacked_bytes, options.max_members) as archive:
        if archive.kind != "zip":
            raise UploadError("file", "is not an .npz; an .npz is a zip archive written by "
                              "numpy.savez or numpy.savez_compressed")
        members = _members_by_array(archive.members)
        # the features first: their size check is the one that says what to change
        x_train = _read_array(archive, members["x_train"], "x", options)
        y_train = _read_array(archive, members["y_train"], "y", options)
        task = options.task or ("regression" if y_train.dtype.kind == "f" else "classification")
        notes: list[str] = []
        if options.task is None:
            notes.append(f"task inferred from y_train's dtype ({y_train.dtype}): {task}")
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            if f"y_{split}" in members:
                y = y_train if split == "train" else _read_array(
                    archive, members[f"y_{split}"], "y", options)
                field = f"file: y_{split}"
                arrays[f"y_{split}"] = (classification_labels(y, field, notes)
                                        if task == "classification"
                                        else regression_targets(y, field))
            if f"x_{split}" in members:
                arrays[f"x_{split}"] = x_train if split == "train" else _read_array(
                    archive, members[f"x_{split}"], "x", options)
        names = {name: _read_names(archive, members[name]) for name in NAME_MEMBERS
                 if name in members}
    parsed = Parsed(task=task, notes=notes, **arrays, **names)
    return check_splits(parsed)


def _members_by_array(members: list[Member]) -> dict[str, Member]:
    found = {}
    for member in members:
        stem = member.name.removesuffix(".npy")
        if member.is_dir or stem not in MEMBERS + NAME_MEMBERS:
            raise UploadError(f"file: {member.name}", "is not an array an npz may hold; give "
                              "x_train, y_train and optionally x_val, y_val, x_test, y_test, "
                              "class_names, feature_names")
        found[stem] = member
    for required in ("x_train", "y_train"):
        if required not in found:
            raise UploadError(f"file: {required}", f"is missing; the npz holds "
                              f"{', '.join(sorted(found)) or 'no arrays'}; save it with "
                              "numpy.savez(path, x_train=..., y_train=...)")
    for split in ("val", "test"):
        if (f"x_{split}" in found) != (f"y_{split}" in found):
            have, lack = ("x", "y") if f"x_{split}" in found else ("y", "x")
            raise UploadError(f"file: {lack}_{split}", f"is missing while {have}_{split} is "
                              "present; give both or neither")
    return found


def _read_array(archive: Archive, member: Member, kind: str,
                options: ParseOptions) -> np.ndarray:
    """Features as float32 (all finite); targets as int64 or float64 as stored."""
    name = member.name.removesuffix(".npy")
    field = f"file: {name}"
    with archive.open(member) as stream:
        shape, fortran_order, dtype = _read_header(stream, field)
        header_bytes = stream.delivered
        if dtype.hasobject:
            raise UploadError(field, "holds Python objects (pickled); pickled objects are not "
                              "accepted; save plain numeric arrays")
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
            raise UploadError(field, f"has dtype {dtype}, which is not numeric; save integers "
                              "or floats")
        if len(shape) == 0:
            raise UploadError(field, "is a single number; give one row per example")
        if kind == "x" and len(shape) < 2:
            raise UploadError(field, f"has shape {shape}: one number per example; give "
                              "features as (n, d), e.g. x.reshape(-1, 1)")
        count = math.prod(shape)
        needed = count * dtype.itemsize
        held = member.size - header_bytes
        if needed > held:
            raise UploadError(field, f"declares shape {shape} of {dtype} ({needed:,} bytes of "
                              f"data) but holds only {held:,}; the file is truncated")
        if needed < held:
            raise UploadError(field, f"holds {held - needed:,} bytes more than its header "
                              f"declares (shape {shape} of {dtype}); the file is damaged")
        if kind == "x":
            check_parsed_bytes(shape, options.max_parsed_bytes, name)
            out_dtype = np.dtype(np.float32)
        else:
            out_dtype = np.dtype(np.float64 if dtype.kind == "f" else np.int64)
            # widened (and copied again by the label checks) only after this
            check_parsed_bytes(shape, options.max_parsed_bytes, name, itemsize=8)
        sink = (NpyWriter(options.work_dir / f"{name}.npy", (count,), out_dtype)
                if kind == "x" and options.work_dir is not None else None)
        flat, bad = _read_data(stream, dtype, count, out_dtype, field, sink)
    if kind == "x" and bad:
        raise UploadError(field, f"has {bad:,} NaN or infinite values (or values beyond "
                          "float32's range) in the features; remove or fill them")
    if fortran_order:
        return np.ascontiguousarray(flat.reshape(shape[::-1]).T)
    return flat.reshape(shape)


def _read_names(archive: Archive, member: Member) -> list[str]:
    """A 1-D array of strings (numpy's "U" dtype, as np.array(["cat", "dog"]) makes), read
    whole: its header says how large, and it is at most MAX_NAMES names of MAX_NAME_CHARS."""
    name = member.name.removesuffix(".npy")
    field = f"file: {name}"
    with archive.open(member) as stream:
        shape, fortran_order, dtype = _read_header(stream, field)
        if dtype.kind != "U" or len(shape) != 1:
            raise UploadError(field, f"is {dtype} of shape {shape}; give a 1-D array of "
                              "strings, e.g. numpy.array(['cat', 'dog'])")
        if shape[0] > MAX_NAMES or dtype.itemsize > 4 * MAX_NAME_CHARS:
            raise UploadError(field, f"holds {shape[0]:,} names of up to "
                              f"{dtype.itemsize // 4:,} characters; at most {MAX_NAMES:,} "
                              f"names of {MAX_NAME_CHARS} characters are accepted")
        needed = shape[0] * dtype.itemsize
        data = read_exactly(stream, needed)
    if len(data) != needed:
        raise UploadError(field, "ends before the data its header declares; the file is "
                          "truncated")
    return [str(value) for value in np.frombuffer(data, dtype=dtype)]


def _read_header(stream: CappedReader, field: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise UploadError(field, f"is not a readable .npy array ({exc})") from exc
    raise UploadError(field, f".npy format version {version} is not accepted (it is only used "
                      "for arrays with text field names); save plain numeric arrays")


def _read_data(stream: CappedReader, dtype: np.dtype, count: int, out_dtype: np.dtype,
               field: str, sink: NpyWriter | None = None) -> tuple[np.ndarray, int]:
    """The data converted chunk by chunk; and how many values are not finite. With a sink,
    the chunks go to its file and the result is that file memory-mapped: a 1 GiB member
    costs a chunk of memory, not a GiB."""
    out = None if sink is not None else np.empty(count, dtype=out_dtype)
    step = max(1, CHUNK_BYTES // dtype.itemsize)
    bad = 0
    try:
        for start in range(0, count, step):
            k = min(step, count - start)
            chunk = read_exactly(stream, k * dtype.itemsize)
            if len(chunk) != k * dtype.itemsize:
                raise UploadError(field, "ends before the data its header declares; the file "
                                  "is truncated")
            with np.errstate(over="ignore", invalid="ignore"):
                values = np.frombuffer(chunk, dtype=dtype).astype(out_dtype)
            if out_dtype.kind == "f":
                bad += int(np.count_nonzero(~np.isfinite(values)))
            if sink is not None:
                sink.write(values)
            else:
                out[start:start + k] = values
    except BaseException:
        if sink is not None:
            sink.close()
        raise
    return (sink.finish() if sink is not None else out), bad
