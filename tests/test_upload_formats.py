"""Upload formats (core/uploads): every file is built here (numpy, csv, gzip, zipfile,
tarfile, Pillow, struct), parsed, and compared with the arrays it was built from; every bad
input is refused with an UploadError that names the field or member."""

from __future__ import annotations

import csv
import gzip
import io
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.uploads import csv_format
from core.uploads.archive import Archive
from core.uploads.formats import ParseOptions, format_from_filename, parse_upload
from core.uploads.parsed import UploadError

OPTS = ParseOptions()
MiB = 1 << 20


def refused(call, field: str, *words: str, status: int = 422) -> UploadError:
    with pytest.raises(UploadError) as caught:
        call()
    error = caught.value
    assert error.status == status, error
    assert field in error.field, error
    for word in words:
        assert word in error.message, error
    return error


# ---- builders -------------------------------------------------------------------------


def write_npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """An .npy member; with `shape`, its header declares that shape instead."""
    out = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    if shape is not None:
        header["shape"] = shape
    np.lib.format.write_array_header_1_0(out, header)
    out.write(array.tobytes())
    return out.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compress: bool = True) -> Path:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_csv(path: Path, rows: list[list[object]], gz: bool = False) -> Path:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def idx_bytes(array: np.ndarray, code: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    dims = dims or array.shape
    return (struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
            + array.tobytes())


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


RNG = np.random.default_rng(0)


# ---- npz ------------------------------------------------------------------------------


def test_npz_round_trip_with_every_split(tmp_path: Path) -> None:
    arrays = {
        "x_train": RNG.normal(size=(20, 3)), "y_train": np.arange(20) % 3,
        "x_val": RNG.normal(size=(6, 3)).astype(np.float32), "y_val": np.array([0, 1, 2] * 2),
        "x_test": RNG.integers(0, 255, (4, 3), dtype=np.uint8), "y_test": np.array([2, 1, 0, 0]),
    }
    for compressed in (False, True):
        path = write_npz(tmp_path / f"d{compressed}.npz", compressed, **arrays)
        parsed = parse_upload(path, "npz", OPTS)
        assert parsed.task == "classification" and parsed.num_classes == 3
        for name, array in arrays.items():
            got = getattr(parsed, name)
            want = array.astype(np.float32 if name[0] == "x" else np.int64)
            assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_npz_regression_fortran_order_and_integral_float_labels(tmp_path: Path) -> None:
    x = np.asfortranarray(RNG.normal(size=(10, 2, 3)))
    y = RNG.normal(size=10)
    parsed = parse_upload(write_npz(tmp_path / "r.npz", x_train=x, y_train=y), "npz", OPTS)
    assert parsed.task == "regression"
    assert np.array_equal(parsed.x_train, x.astype(np.float32))
    assert parsed.x_train.flags.c_contiguous
    assert np.array_equal(parsed.y_train, y.astype(np.float32)[:, None])

    labels = np.array([0.0, 1.0] * 5)
    path = write_npz(tmp_path / "c.npz", x_train=x, y_train=labels)
    parsed = parse_upload(path, "npz", ParseOptions(task="classification"))
    assert parsed.y_train.dtype == np.int64 and np.array_equal(parsed.y_train, labels)
    assert any("whole numbers" in note for note in parsed.notes)
    path = write_npz(tmp_path / "f.npz", x_train=x, y_train=labels + 0.5)
    refused(lambda: parse_upload(path, "npz", ParseOptions(task="classification")),
            "y_train", "non-integer")


def test_npz_refuses_pickled_objects(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "p.npz", x_train=np.array([{"a": 1}, None], dtype=object),
                     y_train=np.array([0, 1]))
    refused(lambda: parse_upload(path, "npz", OPTS), "x_train", "pickled objects are not "
            "accepted")


def test_npz_refuses_header_declaring_more_data_than_held(tmp_path: Path) -> None:
    x = np.zeros((10, 3))
    path = write_zip(tmp_path / "t.npz", {"x_train.npy": npy_bytes(x, shape=(1000, 3)),
                                          "y_train.npy": npy_bytes(np.zeros(10, np.int64))})
    refused(lambda: parse_upload(path, "npz", OPTS), "x_train", "truncated", "(1000, 3)")
    path = write_zip(tmp_path / "h.npz", {"x_train.npy": npy_bytes(x)[:30],
                                          "y_train.npy": npy_bytes(np.zeros(10, np.int64))})
    refused(lambda: parse_upload(path, "npz", OPTS), "x_train", "not a readable .npy")


@pytest.mark.parametrize("arrays, field, words", [
    ({"x_train": np.zeros((4, 2))}, "y_train", ("missing", "numpy.savez")),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "labels": np.zeros(4)},
     "labels", ("x_train, y_train",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(5) % 2}, "train", ("4", "5")),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2,
      "x_val": np.array([[np.nan, 1], [np.inf, 2], [0, 0]]), "y_val": np.array([0, 1, 0])},
     "x_val", ("2 NaN or infinite",)),
    ({"x_train": np.array([["a", "b"]] * 4), "y_train": np.arange(4) % 2}, "x_train",
     ("not numeric",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2,
      "x_test": np.zeros((2, 3)), "y_test": np.array([0, 1])}, "test", ("(3,)", "(2,)")),
    ({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, -1, 0])}, "y_train",
     ("negative label -1",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 10_000, 0])}, "y_train",
     ("10,000",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2,
      "x_val": np.zeros((0, 2)), "y_val": np.zeros(0, np.int64)}, "val", ("empty",)),
    ({"x_train": np.zeros(4), "y_train": np.arange(4) % 2}, "x_train", ("reshape(-1, 1)",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, np.int64)}, "y_train",
     ("single class",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_val": np.zeros((2, 2))},
     "y_val", ("missing while x_val",)),
    ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2 + 1j}, "y_train",
     ("not numeric",)),
])
def test_npz_refusals(tmp_path: Path, arrays, field, words) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    refused(lambda: parse_upload(path, "npz", OPTS), field, *words)


def test_npz_caps_and_not_a_zip(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "big.npz", compressed=True, x_train=np.zeros((MiB // 4, 2)),
                     y_train=np.arange(MiB // 4) % 2)
    refused(lambda: parse_upload(path, "npz", ParseOptions(max_unpacked_bytes=MiB)), "file",
            "1.0 MiB", "TRAINDOCK_MAX_UNPACKED_BYTES", status=413)
    refused(lambda: parse_upload(path, "npz", ParseOptions(max_parsed_bytes=MiB)), "file",
            "x_train", status=413)
    (tmp_path / "x.npz").write_bytes(b"not a zip at all")
    refused(lambda: parse_upload(tmp_path / "x.npz", "npz", OPTS), "file", "neither a zip")


# ---- csv ------------------------------------------------------------------------------


def test_csv_round_trip_numeric_categorical_and_gzip(tmp_path: Path) -> None:
    x = RNG.normal(size=(30, 3)).astype(np.float32)
    species = ["setosa", "virginica", "versicolor"]
    rows = [["a", "b", "species", "c"]] + [
        [repr(float(r[0])), repr(float(r[1])), species[i % 3], repr(float(r[2]))]
        for i, r in enumerate(x)]
    for gz in (False, True):
        path = write_csv(tmp_path / f"d.csv{'.gz' if gz else ''}", rows, gz)
        parsed = parse_upload(path, "csv", ParseOptions(target="species"))
        assert parsed.task == "classification"
        assert parsed.class_names == sorted(species)
        assert np.array_equal(parsed.x_train, x)
        assert np.array_equal(parsed.y_train,
                              [sorted(species).index(species[i % 3]) for i in range(30)])

    ints = write_csv(tmp_path / "i.csv", [["f", "label"]] + [[i, i % 4] for i in range(8)])
    parsed = parse_upload(ints, "csv", OPTS)  # default target: the last column
    assert parsed.task == "classification" and parsed.class_names is None
    assert np.array_equal(parsed.y_train, np.arange(8) % 4) and parsed.y_train.dtype == np.int64

    floats = write_csv(tmp_path / "f.csv", [["f", "price"]] + [[i, i * 1.5] for i in range(5)])
    parsed = parse_upload(floats, "csv", OPTS)
    assert parsed.task == "regression"
    assert np.array_equal(parsed.y_train, (np.arange(5) * 1.5).astype(np.float32)[:, None])
    assert parse_upload(ints, "csv", ParseOptions(task="regression")).task == "regression"


def test_csv_numpy_fast_path_agrees_with_the_csv_module_path(tmp_path: Path) -> None:
    x = RNG.normal(size=(50, 4)).astype(np.float32)
    rows = [["a", "target", "b", "c d"]] + [
        [repr(float(r[0])), i % 3, repr(float(r[1])), repr(float(r[2]))] for i, r in enumerate(x)]
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_NONNUMERIC).writerows(rows)  # "0.12",0,"-1.3",...
    path = tmp_path / "q.csv"
    path.write_text(text.getvalue() + "\r\n\r\n")
    assert text.getvalue().splitlines()[1].startswith('"')
    options = ParseOptions(target="target")
    fast = csv_format._read_fast(path, options)
    assert fast is not None
    for parsed in (parse_upload(path, "csv", options),
                   csv_format._finish(*csv_format._read_slow(path, options), options)):
        assert parsed.task == "classification"
        assert np.array_equal(parsed.x_train, x[:, :3])
        assert np.array_equal(parsed.y_train, np.arange(50) % 3)


@pytest.mark.parametrize("rows, options, field, words", [
    ([], OPTS, "file", ("empty",)),
    ([["a", "y"], [1, 0]], OPTS, "file", ("fewer than 2",)),
    ([["1", "2"], [3, 0], [4, 1]], OPTS, "file", ("header",)),
    ([["a", "y"], [1, 0], [2, 1]], ParseOptions(target="label"), "target", ("a, y",)),
    ([["a", "b", "y"], [1, 2, 0], [1, "x7", 1]], OPTS, "file", ("'b'", "'x7'", "line 3")),
    ([["a", "y"], [1, 0], ["", 1]], OPTS, "file", ("missing", "'a'", "line 3")),
    ([["a", "y"], [1, 0], ["nan", 1]], OPTS, "file", ("NaN", "line 3")),
    ([["a", "y"], [1, 0], [2, 1, 5]], OPTS, "file", ("line 3", "3 fields")),
    ([["a", "y"], [1, 0], [2, ""]], OPTS, "target", ("missing", "line 3")),
    ([["a", "y"], [1, "cat"], [2, "dog"]], ParseOptions(task="regression"), "target",
     ("not numeric", "'cat'")),
    ([["a", "y"], [1, 0.5], [2, 1]], ParseOptions(task="classification"), "target",
     ("'0.5'", "whole-number")),
    ([["y"], [1], [0]], OPTS, "file", ("feature",)),
    ([["a", "y"], [1, -1], [2, 1]], OPTS, "target", ("negative",)),
])
def test_csv_refusals(tmp_path: Path, rows, options, field, words) -> None:
    path = write_csv(tmp_path / "bad.csv", rows)
    refused(lambda: parse_upload(path, "csv", options), field, *words)


def test_csv_gzip_bomb_is_refused_while_inflating(tmp_path: Path) -> None:
    row = b"1,2,3,0\n"
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"a,b,c,y\n" + row * (8 * MiB // len(row))))
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    refused(lambda: parse_upload(path, "csv", ParseOptions(max_unpacked_bytes=MiB)), "file",
            "1.0 MiB", status=413)
    assert time.perf_counter() - started < 2


# ---- MNIST IDX ------------------------------------------------------------------------


def mnist(n: int, prefix: str, dotted: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    images = RNG.integers(0, 256, (n, 4, 5), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    sep = "." if dotted else "-"
    return images, labels, {f"{prefix}-images{sep}idx3-ubyte": idx_bytes(images),
                            f"{prefix}-labels{sep}idx1-ubyte": idx_bytes(labels)}


def test_idx_round_trip_zip_with_gzip_members_and_tgz_dotted(tmp_path: Path) -> None:
    x, y, train = mnist(20, "train")
    xt, yt, test = mnist(10, "t10k")
    members = {f"mnist/{k}.gz": gzip.compress(v) for k, v in train.items()}
    members |= {f"mnist/{k}": v for k, v in test.items()} | {"mnist/README": b"hi"}
    for path in (write_zip(tmp_path / "m.zip", members),
                 write_tgz(tmp_path / "m.tgz", mnist(0, "x")[2] | dict(
                     zip([k.replace("-idx", ".idx") for k in train] +
                         [k.replace("-idx", ".idx") for k in test],
                         list(train.values()) + list(test.values()), strict=True)))):
        parsed = parse_upload(path, "idx", OPTS)
        assert parsed.task == "classification" and parsed.num_classes == 10
        assert parsed.x_train.dtype == np.float32 and parsed.x_train.shape == (20, 1, 4, 5)
        assert np.array_equal(parsed.x_train[:, 0], x) and np.array_equal(parsed.y_train, y)
        assert np.array_equal(parsed.x_test[:, 0], xt) and np.array_equal(parsed.y_test, yt)
        assert parsed.x_val is None


def test_idx_refusals(tmp_path: Path) -> None:
    x, y, train = mnist(10, "train")
    short = dict(train, **{"train-images-idx3-ubyte": idx_bytes(x, dims=(50, 4, 5))})
    for members in (short, {k: gzip.compress(v) for k, v in short.items()}):
        path = write_zip(tmp_path / "short.zip", members)
        refused(lambda: parse_upload(path, "idx", OPTS), "train-images", "declares dims "  # noqa: B023
                "(50, 4, 5)", "holds only")
    path = write_zip(tmp_path / "n.zip", dict(train, **{"train-labels-idx1-ubyte":
                                                       idx_bytes(y[:7])}))
    refused(lambda: parse_upload(path, "idx", OPTS), "train-labels", "7 labels", "10 images")
    path = write_zip(tmp_path / "r.zip", dict(train, **{"train-labels-idx1-ubyte": idx_bytes(
        np.array([-1] + [1] * 9, dtype=">i4"), code=0x0C)}))
    refused(lambda: parse_upload(path, "idx", OPTS), "train-labels", "negative label -1")
    path = write_zip(tmp_path / "m.zip", {"train-images-idx3-ubyte": train[
        "train-images-idx3-ubyte"]})
    refused(lambda: parse_upload(path, "idx", OPTS), "file", "train-labels")
    path = write_zip(tmp_path / "g.zip", dict(train, **{"train-images-idx3-ubyte": b"JUNK"}))
    refused(lambda: parse_upload(path, "idx", OPTS), "train-images", "not an IDX")
    # a gzipped member that inflates past the cap, though the archive declares it small
    bomb = gzip.compress(idx_bytes(np.zeros((4096, 32, 32), np.uint8)))
    others = {k: v for k, v in train.items() if k != "train-images-idx3-ubyte"}
    path = write_zip(tmp_path / "b.zip", dict(others, **{"train-images-idx3-ubyte.gz": bomb}))
    refused(lambda: parse_upload(path, "idx", ParseOptions(max_unpacked_bytes=MiB)), "file",
            "1.0 MiB", status=413)


# ---- image folders --------------------------------------------------------------------


def test_images_round_trip_gray_and_rgb_under_a_top_folder(tmp_path: Path) -> None:
    rgb = {(c, i): RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
           for c in ("dog", "cat") for i in range(3)}
    members = {f"pets/{c}/{i}.png": png_bytes(p) for (c, i), p in rgb.items()}
    members |= {"pets/.DS_Store": b"x", "__MACOSX/pets/._0.png": b"x"}
    path = write_zip(tmp_path / "pets.zip", members)
    parsed = parse_upload(path, "images", OPTS)
    assert parsed.class_names == ["cat", "dog"] and parsed.x_train.shape == (6, 3, 6, 5)
    assert np.array_equal(parsed.y_train, [0, 0, 0, 1, 1, 1])
    for row, key in enumerate([("cat", 0), ("cat", 1), ("cat", 2), ("dog", 0), ("dog", 1),
                               ("dog", 2)]):
        assert np.array_equal(parsed.x_train[row], rgb[key].transpose(2, 0, 1))
    assert any("skipped 2" in note for note in parsed.notes)

    gray = parse_upload(path, "images", ParseOptions(color="grayscale", image_size=(3, 4)))
    assert gray.x_train.shape == (6, 1, 3, 4) and gray.x_train.dtype == np.float32
    want = Image.fromarray(rgb[("cat", 0)]).convert("L").resize((4, 3), Image.BILINEAR)
    assert np.array_equal(gray.x_train[0, 0], np.asarray(want, np.float32))


def test_images_split_folders_and_jpeg_in_a_tgz(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    jpeg = png_bytes(pixels, "JPEG")
    members = {f"{split}/{c}/{i}.jpg": jpeg for split, n in (("train", 3), ("test", 2))
               for c in ("a", "b") for i in range(n)}
    members["val/b/0.JPEG"] = jpeg
    parsed = parse_upload(write_tgz(tmp_path / "s.tar.gz", members), "images", OPTS)
    assert (len(parsed.x_train), len(parsed.x_val), len(parsed.x_test)) == (6, 1, 4)
    assert np.array_equal(parsed.y_test, [0, 0, 1, 1]) and np.array_equal(parsed.y_val, [1])
    assert parsed.x_train.shape[1:] == (3, 8, 8)
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)  # lossy
    assert all(np.array_equal(x, decoded.transpose(2, 0, 1)) for x in parsed.x_train)
    assert any("val/ has no images of a" in note for note in parsed.notes)


def test_images_refusals(tmp_path: Path) -> None:
    small = png_bytes(np.zeros((4, 4), np.uint8))

    def check(members: dict[str, bytes], field: str, *words: str, options=OPTS,
              status: int = 422) -> None:
        path = write_zip(tmp_path / "bad.zip", members)
        refused(lambda: parse_upload(path, "images", options), field, *words, status=status)

    check({"a/0.png": small, "b/0.png": png_bytes(np.zeros((5, 4), np.uint8))}, "image_size",
          "differ in size", "b/0.png")
    check({"a/0.png": small, "b/0.png": b"\x89PNG broken"}, "b/0.png", "cannot be decoded")
    check({"a/0.png": small, "b/notes.txt": b"hello"}, "b/notes.txt", "not a .png")
    check({"a/0.png": small, "0.png": small}, "file", "not in a class folder")
    check({"a/0.png": png_bytes(np.zeros((2, 2), np.uint8)), "b/0.png": small}, "b/0.png",
          "4x4 pixels", "limit of 10 pixels",
          options=ParseOptions(max_image_pixels=10), status=413)
    check({"train/a/0.png": small, "train/b/0.png": small, "test/c/0.png": small}, "file",
          "class folder(s) c")
    check({"a/0.png": small}, "file", "single class")
    check({"readme.md": b"x"}, "readme.md", "not a .png")
    check({"a/0.png": small, "b/": b"", "c/0.png": small}, "b", "no images")
    check({}, "file", "holds no images")


# ---- archive safety -------------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("../evil/0.png", "'..'"), ("a/../../0.png", "'..'"), ("/etc/0.png", "absolute"),
    ("C:/x/0.png", "absolute"), ("..\\x\\0.png", "'..'"),
])
def test_archives_refuse_escaping_names(tmp_path: Path, name: str, words: str) -> None:
    png = png_bytes(np.zeros((2, 2), np.uint8))
    for path in (write_zip(tmp_path / "e.zip", {"a/0.png": png, name: png}),
                 write_tgz(tmp_path / "e.tgz", {"a/0.png": png, name: png})):
        refused(lambda: parse_upload(path, "images", OPTS), "file", words)  # noqa: B023


def test_tar_refuses_links_and_zip_refuses_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "l.tgz"
    for kind, target in ((tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "a/0.png"),
                         (tarfile.CHRTYPE, "")):
        with tarfile.open(path, "w:gz") as archive:
            info = tarfile.TarInfo("b/0.png")
            info.type, info.linkname = kind, target
            archive.addfile(info)
        refused(lambda: Archive(path, 1 << 30, 100), "file", "'b/0.png'", "link, device")
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a/0.png", b"1")
        archive.writestr("a/0.png", b"2")
    refused(lambda: Archive(path, 1 << 30, 100), "file", "appears twice")
    path = write_zip(tmp_path / "many.zip", {f"a/{i}.png": b"" for i in range(11)})
    refused(lambda: Archive(path, 1 << 30, 10), "file", "10 members", status=413)


def test_zip_bomb_declaring_huge_is_refused_before_inflating(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bomb.zip", {"a/0.png": bytes(64 * MiB)})
    assert path.stat().st_size < MiB
    started = time.perf_counter()
    refused(lambda: parse_upload(path, "images", ParseOptions(max_unpacked_bytes=MiB)), "file",
            "1.0 MiB", "TRAINDOCK_MAX_UNPACKED_BYTES", status=413)
    path = write_tgz(tmp_path / "bomb.tgz", {"a/0.png": bytes(64 * MiB), "b/0.png": b""})
    refused(lambda: Archive(path, MiB, 100), "file", "1.0 MiB", status=413)
    assert time.perf_counter() - started < 1.5


def test_zip_member_that_declares_small_but_inflates_huge(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "liar.zip", {"a/0.png": bytes(64 * MiB)})
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, 1000)  # the local header's uncompressed size
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # and the central directory's
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    with Archive(path, MiB, 100) as archive:
        assert archive.members[0].size == 1000
        refused(lambda: archive.read(archive.members[0]), "a/0.png", "headers do not match")
        assert archive.budget.used <= 1000  # read no further than the lie
    refused(lambda: parse_upload(path, "images", ParseOptions(max_unpacked_bytes=MiB)),
            "a/0.png")
    assert time.perf_counter() - started < 1


# ---- format inference and options -----------------------------------------------------


def test_format_from_filename(tmp_path: Path) -> None:
    assert format_from_filename("Data.NPZ") == "npz"
    assert format_from_filename("../../etc/iris.csv") == "csv"
    assert format_from_filename("iris.csv.gz") == "csv"
    _, _, train = mnist(3, "train")
    assert format_from_filename("m.tgz", write_tgz(tmp_path / "upload", train)) == "idx"
    png = png_bytes(np.zeros((2, 2), np.uint8))
    zipped = write_zip(tmp_path / "upload2", {"x/a/0.png": png, "x/b/0.png": png})
    assert format_from_filename("pets.zip", zipped) == "images"
    assert format_from_filename("pets.tar.gz", write_tgz(tmp_path / "u3", {"a/0.jpg": png})) \
        == "images"
    refused(lambda: format_from_filename("x.zip", write_zip(tmp_path / "u4", {"r.txt": b""})),
            "file", "neither")
    refused(lambda: format_from_filename("data.txt"), "file", ".npz", ".csv.gz", ".tgz")
    refused(lambda: format_from_filename("train-images-idx3-ubyte.gz"), "file", "together")
    refused(lambda: format_from_filename("x.zip"), "format", "format=idx")
    refused(lambda: parse_upload(zipped, "parquet", OPTS), "format", "npz, csv, idx, images")


def test_options_refuse_bad_values() -> None:
    refused(lambda: ParseOptions(task="ranking"), "task", "classification")
    refused(lambda: ParseOptions(color="cmyk"), "color", "grayscale")
    refused(lambda: ParseOptions(image_size=(0, 28)), "image_size", "(height, width)")
    refused(lambda: ParseOptions(image_size=(28,)), "image_size")
    assert ParseOptions(image_size=[28, 28]).image_size == (28, 28)


def test_damaged_files_are_refused_with_an_upload_error_never_another(tmp_path: Path) -> None:
    """Truncated and byte-flipped copies of good files: each one parses or is refused with
    an UploadError (a 4xx), never another exception (a 500)."""
    png = png_bytes(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    _, _, train = mnist(12, "train")
    good = [
        (write_npz(tmp_path / "a.npz", True, x_train=np.ones((8, 3)), y_train=np.arange(8) % 2),
         "npz"),
        (write_csv(tmp_path / "c.csv.gz", [["a", "y"]] + [[i, "xy"[i % 2]] for i in range(9)],
                   gz=True), "csv"),
        (write_zip(tmp_path / "e.zip", {k + ".gz": gzip.compress(v) for k, v in train.items()}),
         "idx"),
        (write_tgz(tmp_path / "g.tgz", {f"{c}/{i}.png": png for c in "ab" for i in range(2)}),
         "images"),
    ]
    rng = np.random.default_rng(7)
    damaged = tmp_path / "damaged"
    for path, fmt in good:
        data = path.read_bytes()
        parse_upload(path, fmt, OPTS)
        for trial in range(40):
            copy = bytearray(data[: rng.integers(len(data))] if trial % 3 == 0 else data)
            if trial % 3:
                for at in rng.integers(len(copy), size=rng.integers(1, 4)):
                    copy[at] = rng.integers(256)
            damaged.write_bytes(bytes(copy))
            try:
                parse_upload(damaged, fmt, OPTS)
            except UploadError as error:
                assert 400 <= error.status < 500 and error.message
