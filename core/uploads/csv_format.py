"""`.csv` and `.csv.gz` uploads: a header row, numeric feature columns, and a target
column (the last one unless `target` names another) that is numeric or categorical.
Categories become labels in sorted order, and their names become `class_names`; the other
columns' header names become `feature_names`.

All-numeric files are read by numpy's C parser (np.loadtxt). Any other file, or one numpy
refuses, is read with the csv module in blocks of ROWS_PER_BLOCK rows, converted with numpy;
a block that numpy refuses is walked cell by cell to say which value on which line is wrong.
Comma-separated, `"` quotes, UTF-8 (a BOM is allowed)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.uploads.archive import GZIP_MAGIC, CappedReader
from core.uploads.limits import Budget, check_parsed_bytes
from core.uploads.options import ParseOptions
from core.uploads.parsed import Parsed, UploadError
from core.uploads.validate import check_splits, classification_labels, regression_targets

ROWS_PER_BLOCK = 65_536
MAX_COLUMNS = 65_536
MAX_TARGET_CHARS = 256  # a class name or a number; a longer one makes every row's copy long
MAX_BLANK_LINES = 10_000  # a gzip of newlines inflates a thousandfold and holds no data
# A .csv.gz may inflate to this many times its size (real ones: 3 to 30), at least
# RATIO_FLOOR bytes: a gzip bomb is refused after a few seconds of inflating, not minutes.
MAX_GZIP_RATIO = 100
RATIO_FLOOR = 64 << 20
TARGET_WIDTH = f"U{MAX_TARGET_CHARS}"


def parse_csv(path: Path, options: ParseOptions) -> Parsed:
    # One pass of inflating and counting in C first: what the text unpacks to, and how many
    # rows it has, are checked before any parser spends seconds (or gigabytes) on it.
    lines = _line_count(path, options)
    fast = _read_fast(path, options, lines)
    if fast is not None:
        try:
            return _finish(*fast, options)
        except UploadError:
            pass  # the csv-module path finds the same problem and the line it is on
    return _finish(*_read_slow(path, options, lines), options)


def _line_count(path: Path, options: ParseOptions) -> int:
    with open(path, "rb") as raw:
        stream: io.RawIOBase | io.BufferedIOBase = raw  # type: ignore[assignment]
        if raw.read(2) == GZIP_MAGIC:
            stream = CappedReader(gzip.GzipFile(fileobj=raw), _budget(path, options), "file")
        raw.seek(0)
        count = 0
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _finish(header: list[str], target_index: int, x: np.ndarray, target: np.ndarray,
            lines: np.ndarray, options: ParseOptions) -> Parsed:
    if len(x) < 2:
        raise UploadError("file", "has fewer than 2 data rows; a dataset needs more examples")
    notes: list[str] = []
    task, y, class_names = _target(target, lines, header[target_index], options, notes)
    features = [name for i, name in enumerate(header) if i != target_index]
    parsed = Parsed(task=task, x_train=x, y_train=y, class_names=class_names,
                    feature_names=features, notes=notes)
    return check_splits(parsed, {"train": "target"})


def _read_header(text: io.TextIOBase, options: ParseOptions):
    """The header and the csv reader positioned after it; the target column's index."""
    reader = csv.reader(text)
    header = [name.strip() for name in _next_row(reader) or []]
    if not header:
        raise UploadError("file", "is empty; a csv starts with a header row naming the "
                          "columns")
    if len(header) > MAX_COLUMNS:
        raise UploadError("file", f"has {len(header):,} columns, more than {MAX_COLUMNS:,}; "
                          "upload fewer features")
    target_index = _target_index(header, options.target)
    if len(header) < 2:
        raise UploadError("file", f"has only the target column {header[target_index]!r}; "
                          "add feature columns")
    return reader, header, target_index


def _budget(path: Path, options: ParseOptions) -> Budget:
    """What the text may inflate to: TRAINDOCK_MAX_UNPACKED_BYTES, and for a gzip at most
    MAX_GZIP_RATIO times its own size."""
    cap = options.max_unpacked_bytes
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    ratio_cap = max(RATIO_FLOOR, MAX_GZIP_RATIO * path.stat().st_size)
    if gzipped and ratio_cap < cap:
        return Budget(ratio_cap, f"more than {MAX_GZIP_RATIO} times its compressed size, "
                      "which only a decompression bomb or a file of repeated rows does; "
                      "upload the csv uncompressed")
    return Budget(cap)


def _check_rows(rows: int, columns: int, options: ParseOptions) -> None:
    check_parsed_bytes((rows, columns), options.max_parsed_bytes, "the csv's features")


def _read_fast(path: Path, options: ParseOptions, lines: int | None = None):
    """Every column at once with numpy's C parser (about three times the csv module's
    speed): for the common large case, all numbers and nothing wrong. None when numpy
    refuses the file; the csv-module path then says what is wrong, on which line."""
    loadtxt = {"delimiter": ",", "quotechar": '"', "comments": None}
    try:
        with warnings.catch_warnings(), _open_text(path, _budget(path, options)) as text:
            warnings.simplefilter("ignore")  # "input contained no data"
            _, header, target_index = _read_header(text, options)
            _check_rows(_line_count(path, options) if lines is None else lines, len(header),
                        options)
            table = np.loadtxt(text, dtype=np.float32, ndmin=2, **loadtxt)
        if table.shape[1] != len(header) or not np.isfinite(table).all():
            return None
        _check_rows(len(table), len(header), options)
        with warnings.catch_warnings(), _open_text(path, _budget(path, options)) as text:
            warnings.simplefilter("ignore")
            _read_header(text, options)
            # the target again as text: "3" and "3.0" decide the task differently. Fixed
            # width: a value that fills it may be longer, and the csv-module path says so.
            target = np.loadtxt(text, dtype=TARGET_WIDTH, ndmin=1, usecols=[target_index],
                                **loadtxt)
        if len(target) and int(np.char.str_len(target).max()) >= MAX_TARGET_CHARS:
            return None
    except UploadError:
        raise
    except ValueError:
        return None
    x = np.delete(table, target_index, axis=1)
    lines = np.arange(2, len(x) + 2)  # only right without blank lines; see parse_csv
    return header, target_index, x, np.char.strip(target), lines


def _read_slow(path: Path, options: ParseOptions, lines: int | None = None):
    with _open_text(path, _budget(path, options)) as text:
        reader, header, target_index = _read_header(text, options)
        _check_rows(_line_count(path, options) if lines is None else lines, len(header),
                    options)
        x_blocks, targets, lines = _read_rows(reader, header, target_index, options)
    return (header, target_index, np.concatenate(x_blocks), np.concatenate(targets),
            np.concatenate(lines))


class _BlankLineGuard(io.RawIOBase):
    """Refuses a stream of empty lines as the bytes pass (counting `\n\n` in C), before a
    line-by-line reader spends minutes on millions of them."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._blank = 0
        self._last = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)
        if n:
            data = self._last + bytes(buffer[:n])
            self._blank += data.count(b"\n\n") + data.count(b"\n\r\n")
            self._last = data[-1:]
            if self._blank > MAX_BLANK_LINES:
                raise UploadError("file", f"has more than {MAX_BLANK_LINES:,} blank lines; "
                                  "remove them")
        return n


@contextlib.contextmanager
def _open_text(path: Path, budget: Budget) -> Iterator[io.TextIOBase]:
    with open(path, "rb") as raw:
        binary: io.BufferedIOBase = raw  # type: ignore[assignment]
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            binary = io.BufferedReader(CappedReader(gzip.GzipFile(fileobj=raw), budget, "file"))
        else:
            raw.seek(0)
        binary = io.BufferedReader(_BlankLineGuard(binary), 1 << 20)  # type: ignore[arg-type]
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        try:
            yield text
        except UnicodeDecodeError as exc:
            raise UploadError("file", f"is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start} of a block); save the csv as UTF-8") from exc
        finally:
            text.detach()


def _next_row(reader) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise UploadError("file", f"line {reader.line_num}: {exc}") from exc


def _target_index(header: list[str], target: str | None) -> int:
    if all(_is_number(name) for name in header):
        raise UploadError("file", f"the first row ({', '.join(header[:5])}) looks like data, "
                          "not a header; add a header row naming the columns")
    name = header[-1] if target is None else target.strip()
    count = header.count(name)
    if count == 0:
        raise UploadError("target", f"no column {name!r}; the columns are: "
                          f"{', '.join(header)}")
    if count > 1:
        raise UploadError("target", f"{count} columns are named {name!r}; rename them")
    return header.index(name)


def _read_rows(reader, header: list[str], target_index: int, options: ParseOptions):
    """Feature blocks (float32), target strings and the line each row came from."""
    x_blocks: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    rows: list[list[str]] = []
    row_targets: list[str] = []
    row_lines: list[int] = []
    features = [name for i, name in enumerate(header) if i != target_index]

    def flush() -> None:
        x_blocks.append(_to_floats(rows, row_lines, features))
        targets.append(np.array(row_targets, dtype=str))
        lines.append(np.array(row_lines, dtype=np.int64))
        rows.clear()
        row_targets.clear()
        row_lines.clear()

    blank = count = 0
    while (row := _next_row(reader)) is not None:
        if not row or (len(row) == 1 and not row[0].strip()):
            blank += 1  # blank lines, such as a trailing one
            if blank > MAX_BLANK_LINES:
                raise UploadError("file", f"has more than {MAX_BLANK_LINES:,} blank lines; "
                                  "remove them")
            continue
        if len(row) != len(header):
            raise UploadError("file", f"line {reader.line_num} has {len(row)} fields but the "
                              f"header has {len(header)}; every row needs one value per column")
        count += 1
        if count % 1024 == 0:
            _check_rows(count, len(header), options)
        target = row.pop(target_index).strip()
        if len(target) > MAX_TARGET_CHARS:
            raise UploadError("target", f"the value on line {reader.line_num} is "
                              f"{len(target):,} characters long; a class name or number has at "
                              f"most {MAX_TARGET_CHARS}")
        row_targets.append(target)
        rows.append(row)
        row_lines.append(reader.line_num)
        if len(rows) == ROWS_PER_BLOCK:
            flush()
    if rows or not x_blocks:
        flush()
    return x_blocks, targets, lines


def _to_floats(rows: list[list[str]], lines: list[int], features: list[str]) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):
            block = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
            block = block.astype(np.float32)
    except ValueError:
        block = None
    if block is not None and np.isfinite(block).all():
        return block
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: refused below
        _explain_bad_value(rows, lines, features)
        # numpy parses with Python's float, so this is not reached; if it ever is, Python's
        # float has accepted every value and decides
        return np.array([[float(v) for v in row] for row in rows], np.float64).astype(np.float32)


def _explain_bad_value(rows: list[list[str]], lines: list[int], features: list[str]) -> None:
    for row, line in zip(rows, lines, strict=True):
        for value, name in zip(row, features, strict=True):
            if not value.strip():
                raise UploadError("file", f"column {name!r} has a missing value on line "
                                  f"{line}; fill or drop it")
            if not _is_number(value):
                raise UploadError("file", f"column {name!r} is not numeric: {value!r} on line "
                                  f"{line}; features must be numbers (encode categories first)")
            if not np.isfinite(np.float32(float(value))):
                raise UploadError("file", f"column {name!r} has {value.strip()!r} on line "
                                  f"{line}; NaN and infinite values (or values beyond "
                                  "float32's range) are not accepted")


def _target(values: np.ndarray, lines: np.ndarray, name: str, options: ParseOptions,
            notes: list[str]):
    """(task, y, class_names) from the target column's text."""
    missing = np.flatnonzero(values == "")
    if len(missing):
        raise UploadError("target", f"column {name!r} has a missing value on line "
                          f"{lines[missing[0]]}; fill or drop it")
    integers = _parse(values, np.int64)
    numbers = integers if integers is not None else _parse(values, np.float64)
    if numbers is None:  # categorical
        if options.task == "regression":
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise UploadError("target", f"column {name!r} is not numeric ({values[bad]!r} on "
                              f"line {lines[bad]}); regression needs numbers")
        class_names, labels = np.unique(values, return_inverse=True)
        notes.append(f"target {name!r}: {len(class_names)} categories, labelled in sorted "
                     "order")
        return "classification", labels.astype(np.int64), [str(c) for c in class_names]
    bad = ~np.isfinite(numbers) if numbers.dtype.kind == "f" else np.zeros(len(numbers), bool)
    if bad.any():
        at = int(np.argmax(bad))
        raise UploadError("target", f"column {name!r} has {values[at]!r} on line {lines[at]}; "
                          "NaN and infinite values are not accepted")
    task = options.task or ("classification" if integers is not None else "regression")
    if options.task is None:
        kind = "integers" if integers is not None else "decimal numbers"
        notes.append(f"target {name!r} holds {kind}: task inferred as {task}")
    if task == "regression":
        return task, regression_targets(numbers, "target"), None
    if integers is None:
        fractional = numbers != np.round(numbers)
        if fractional.any():
            at = int(np.argmax(fractional))
            raise UploadError("target", f"column {name!r} has {values[at]!r} on line "
                              f"{lines[at]}; a classifier needs whole-number labels "
                              "(or use task=regression)")
    return task, classification_labels(numbers, "target", notes), None


def _parse(values: np.ndarray, dtype) -> np.ndarray | None:
    try:
        return values.astype(dtype)
    except (ValueError, OverflowError):
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
