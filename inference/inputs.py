"""What a prediction request may send, read into one float32 array (N, *input_shape): JSON
arrays or rows of named features, a CSV file with a header, an .npz file with an `x` array,
or PNG/JPEG images. Every refusal is an InputError naming the field and what to change.

Pure numpy and Pillow: it runs inside the prediction server (inference/server.py), the
bounded process, never in the API's."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# A white pixel's value in the training data: digits (scikit-learn's) counts ink 0..16; an
# image-folder upload keeps 0..255 (core/uploads/images.py).
IMAGE_VALUE_MAX = {"digits": 16.0}
DEFAULT_IMAGE_VALUE_MAX = 255.0
MAX_IMAGE_PIXELS = 4096 * 4096


class InputError(Exception):
    """A request the model cannot take: `field` names what to change; status 422 or 413."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "status": self.status}


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: one row's shape, the feature names of a table, the rows one
    request may hold, and for an image model the value of a white pixel."""

    input_shape: tuple[int, ...]
    feature_names: tuple[str, ...] | None
    max_rows: int
    image_value_max: float | None

    @property
    def size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def image_mode(self) -> str | None:
        """Pillow's mode for an image model's input ("L", "RGB"), None for other inputs."""
        shape = self.input_shape
        if self.image_value_max is None:
            return None
        if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
            return "L"
        if len(shape) == 3 and shape[0] == 3:
            return "RGB"
        return None


def input_spec(input_shape: tuple[int, ...], feature_names: tuple[str, ...] | None,
               dataset_name: str, max_rows: int) -> InputSpec:
    images = feature_names is None and (
        len(input_shape) == 2 or (len(input_shape) == 3 and input_shape[0] in (1, 3)))
    value_max = IMAGE_VALUE_MAX.get(dataset_name, DEFAULT_IMAGE_VALUE_MAX) if images else None
    return InputSpec(tuple(input_shape), feature_names, max_rows, value_max)


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape) if shape else "a scalar"


def takes(spec: InputSpec) -> str:
    """"64 (1x8x8)": how the messages say what one row must be."""
    if len(spec.input_shape) == 1:
        return str(spec.size)
    return f"{spec.size} ({shape_text(spec.input_shape)})"


def parse_body(kind: str, payload: bytes, spec: InputSpec,
               files: list[dict[str, Any]] | None = None) -> np.ndarray:
    """The rows of one request. `kind`: json (the body), csv, npz or image (files, whose
    sizes `files` lists in the order their bytes follow each other in `payload`)."""
    try:
        if kind == "json":
            return parse_json(payload, spec)
        if kind == "csv":
            return parse_csv(payload, spec)
        if kind == "npz":
            return parse_npz(payload, spec)
        if kind == "image":
            return parse_images(payload, files or [], spec)
    except RecursionError:  # JSON nested thousands of levels deep
        raise InputError("body", "is nested too deep; send rows of numbers, each flat or "
                         f"in the input shape {shape_text(spec.input_shape)}") from None
    raise InputError("file", f"unknown kind {kind!r}")


def _check_rows(field: str, n: int, spec: InputSpec) -> None:
    if n == 0:
        raise InputError(field, "holds no rows; send at least one")
    if n > spec.max_rows:
        raise InputError(field, f"holds {n:,} rows; one request may hold at most "
                         f"{spec.max_rows:,} (setting TRAINDOCK_PREDICT_MAX_ROWS): send them in "
                         "smaller batches", status=413)


def _check_finite(field: str, x: np.ndarray, names: tuple[str, ...] | None = None) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        where = f"{field}[{row}].{names[col]}" if names else f"{field}[{row}]"
        at = "" if names else f" (value {col})"
        raise InputError(where, f"is NaN or infinite{at}, or too large for float32; send "
                         "finite numbers")


def parse_json(payload: bytes, spec: InputSpec) -> np.ndarray:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise InputError("body", f"is not valid JSON ({exc}); send {{\"inputs\": [[...], "
                         "...]}} or {\"rows\": [{\"feature\": value}, ...]}") from exc
    if not isinstance(body, dict) or len(set(body) & {"inputs", "rows"}) != 1:
        raise InputError("body", "needs exactly one of \"inputs\" (arrays, one per row) or "
                         "\"rows\" (objects of feature names to numbers)")
    extra = sorted(set(body) - {"inputs", "rows"})
    if extra:
        raise InputError(extra[0], "is not a field of a prediction request; send only "
                         "\"inputs\" or \"rows\"")
    if "rows" in body:
        return parse_rows(body["rows"], spec)
    return parse_arrays(body["inputs"], spec)


def parse_arrays(inputs: Any, spec: InputSpec) -> np.ndarray:
    if not isinstance(inputs, list):
        raise InputError("inputs", f"must be a list of rows, each {takes(spec)} numbers")
    _check_rows("inputs", len(inputs), spec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = np.asarray(inputs)
    except ValueError:  # ragged
        x = None
    if x is None or x.dtype.kind not in "iuf" or not _fits(x.shape[1:], spec):
        _explain_row(inputs, spec)
    with np.errstate(over="ignore"):
        x = x.astype(np.float32).reshape(len(inputs), *spec.input_shape)
    _check_finite("inputs", x)
    return x


def _fits(shape: tuple[int, ...], spec: InputSpec) -> bool:
    """A row flat, in the model's shape, or an image's (H, W) without its channel."""
    shapes = {(spec.size,), spec.input_shape}
    if len(spec.input_shape) == 3 and spec.input_shape[0] == 1:
        shapes.add(spec.input_shape[1:])
    return tuple(shape) in shapes


def _explain_row(inputs: list, spec: InputSpec) -> None:
    """Raise for the first row that is not `spec.size` numbers."""
    for i, row in enumerate(inputs):
        field = f"inputs[{i}]"
        values = row if isinstance(row, list) else [row]
        flat = list(_flatten(values, field))
        if len(flat) != spec.size:
            raise InputError(field, f"has {len(flat)} values, the model takes {takes(spec)}")
        try:
            shape = np.asarray(row).shape
        except ValueError:
            shape = ()
        if not _fits(shape, spec):
            raise InputError(field, f"has shape {shape_text(shape)}; the model takes "
                             f"{takes(spec)}: send the row flat or in that shape")
    raise InputError("inputs", f"must be a list of rows, each {takes(spec)} numbers")


def _flatten(values: list, field: str):
    for j, value in enumerate(values):
        if isinstance(value, list):
            yield from _flatten(value, field)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(field, f"holds {json.dumps(value)} at value {j}; send numbers")
        else:
            yield value


def parse_rows(rows: Any, spec: InputSpec) -> np.ndarray:
    names = spec.feature_names
    if names is None:
        raise InputError("rows", "this model's inputs have no feature names (they are "
                         f"{takes(spec)} values); send \"inputs\" arrays instead")
    if not isinstance(rows, list):
        raise InputError("rows", "must be a list of objects of feature names to numbers")
    _check_rows("rows", len(rows), spec)
    x = np.empty((len(rows), len(names)), np.float64)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"rows[{i}]", "must be an object of feature names to numbers")
        _check_names(f"rows[{i}]", list(row), names)
        for j, name in enumerate(names):
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"rows[{i}].{name}", f"is {json.dumps(value)}; send a number")
            x[i, j] = value
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    _check_finite("rows", x32, names)
    return x32.reshape(len(rows), *spec.input_shape)


def _check_names(field: str, given: list[str], names: tuple[str, ...]) -> None:
    unknown = [n for n in given if n not in names]
    missing = [n for n in names if n not in given]
    listed = ", ".join(names)
    if unknown:
        raise InputError(field, f"unknown feature(s) {', '.join(map(repr, unknown))}; the "
                         f"model's features are: {listed}")
    if missing:
        raise InputError(field, f"lacks feature(s) {', '.join(map(repr, missing))}; give every "
                         f"one of: {listed}")


def parse_csv(payload: bytes, spec: InputSpec) -> np.ndarray:
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("file", "is not UTF-8 text; save the CSV as UTF-8") from exc
    lines = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    if not lines:
        raise InputError("file", "is empty; send a header naming the features, then rows")
    header = [c.strip() for c in lines[0]]
    names = spec.feature_names
    if names is not None:
        _check_names("file: header", header, names)
        order = [header.index(n) for n in names]
        body = lines[1:]
    else:
        order = list(range(spec.size))
        body = lines[1:] if not _numeric(header) else lines
        if body and len(body[0]) != spec.size:
            raise InputError("file", f"has {len(body[0])} columns, the model takes "
                             f"{takes(spec)} values per row")
    _check_rows("file", len(body), spec)
    x = np.empty((len(body), len(order)), np.float64)
    for i, row in enumerate(body):
        line = i + 1 + (len(lines) - len(body))
        if len(row) != len(header if names is not None else order):
            raise InputError(f"file: line {line}", f"has {len(row)} values, the header "
                             f"{len(header)}; give every row one value per column")
        for j, col in enumerate(order):
            try:
                x[i, j] = float(row[col])
            except ValueError as exc:
                column = names[j] if names else str(col + 1)
                raise InputError(f"file: line {line}, column {column}",
                                 f"{row[col]!r} is not a number") from exc
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    _check_finite("file", x32, names)
    return x32.reshape(len(body), *spec.input_shape)


def _numeric(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


def parse_npz(payload: bytes, spec: InputSpec) -> np.ndarray:
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        member = archive.getinfo("x.npy")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise InputError("file", "is not an .npz file holding an array named x; save it with "
                         "numpy.savez(path, x=inputs)") from exc
    limit = spec.max_rows * spec.size * 8 + 4096
    if member.file_size > limit:
        raise InputError("file", f"x unpacks to {member.file_size:,} bytes, more than "
                         f"{spec.max_rows:,} rows of {takes(spec)} float64 values; send "
                         "smaller batches", status=413)
    try:
        x = np.load(io.BytesIO(archive.read(member)), allow_pickle=False)
    except ValueError as exc:
        raise InputError("file", f"x cannot be read without pickle ({exc}); save a numeric "
                         "array") from exc
    if x.dtype.kind not in "iuf":
        raise InputError("file", f"x holds {x.dtype} values; save numbers")
    if x.ndim == 0:
        raise InputError("file", f"x is a scalar; save rows of {takes(spec)} values")
    _check_rows("file", len(x), spec)
    if not _fits(x.shape[1:], spec):
        raise InputError("file", f"x has shape {shape_text(x.shape)}; the model takes rows of "
                         f"{takes(spec)}: (N, {', '.join(map(str, spec.input_shape))})")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32).reshape(len(x), *spec.input_shape)
    _check_finite("file: x", x32)
    return x32


def parse_images(payload: bytes, files: list[dict[str, Any]], spec: InputSpec) -> np.ndarray:
    mode = spec.image_mode
    if mode is None:
        raise InputError("file", f"is an image, but this model takes {takes(spec)} values "
                         "that are not an image; send JSON, CSV or .npz instead")
    _check_rows("file", len(files), spec)
    height, width = spec.input_shape[-2:]
    x = np.empty((len(files), *spec.input_shape), np.float32)
    offset = 0
    for i, described in enumerate(files):
        data = payload[offset:offset + described["size"]]
        offset += described["size"]
        x[i] = _decode(data, described["name"], mode, height, width).reshape(spec.input_shape)
    assert spec.image_value_max is not None
    return x * np.float32(spec.image_value_max / 255.0)


def _decode(data: bytes, name: str, mode: str, height: int, width: int) -> np.ndarray:
    """(C, H, W) float32, 0..255, resized as an image-folder upload is."""
    field = f"file: {name}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as opened:
                w, h = opened.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise InputError(field, f"is {w}x{h} pixels, more than {MAX_IMAGE_PIXELS:,}; "
                                     "shrink it", status=413)
                image = opened.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(field, f"cannot be decoded as a PNG or JPEG image ({exc}); send a "
                         "PNG or JPEG") from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
