"""Image-folder uploads: a .zip (or .tar.gz) of `<class>/<file>.png|jpg|jpeg`, optionally
under one top folder, optionally split into `train/`, `val/` and `test/` folders that each
hold the class folders. Class names sorted give the labels, the same in every split.

Images become float32 (1, H, W) grayscale or (3, H, W) RGB, values 0..255, resized to
`image_size` (or kept at their own size, which must then be the same for all). Only the
PNG and JPEG decoders are allowed, and an image's pixel count is checked from its header
before it is decoded (decompression bombs). Dotfiles and __MACOSX folders (macOS zip
leftovers) are skipped with a note; any other file that is not a .png/.jpg/.jpeg is refused,
named."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.uploads.archive import Archive, Member
from core.uploads.limits import check_parsed_bytes
from core.uploads.options import ParseOptions
from core.uploads.parsed import SPLITS, Parsed, UploadError
from core.uploads.validate import check_splits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}
LAYOUT = "<class>/<image> or train/<class>/<image> (and val/, test/)"


@dataclass(frozen=True)
class Planned:
    member: Member
    split: str
    label: int
    slot: int  # the row in its split: sorted by class, then name, whatever the archive order


def is_skipped(member: Member) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.parts)


def is_image(member: Member) -> bool:
    return member.basename.lower().endswith(IMAGE_SUFFIXES)


def parse_images(path: Path, options: ParseOptions) -> Parsed:
    with Archive(path, options.max_unpacked_bytes, options.max_members) as archive:
        notes: list[str] = []
        plan, class_names = _plan(archive.members, notes)
        arrays = _decode_all(archive, plan, len(class_names), options, notes)
    parsed = Parsed(task="classification", class_names=class_names, notes=notes, **arrays)
    return check_splits(parsed)


def _plan(members: list[Member], notes: list[str]) -> tuple[list[Planned], list[str]]:
    files = [m for m in members if not m.is_dir and not is_skipped(m)]
    skipped = [m for m in members if not m.is_dir and is_skipped(m)]
    if skipped:
        notes.append(f"skipped {len(skipped)} hidden or __MACOSX file(s), e.g. "
                     f"{skipped[0].name}")
    for member in files:
        if not is_image(member):
            raise UploadError(f"file: {member.name}", "is not a .png, .jpg or .jpeg image; "
                              f"an image archive holds only {LAYOUT}")
    if not files:
        raise UploadError("file", f"holds no images; lay them out as {LAYOUT}")
    top = {m.parts[0] for m in files}
    strip = int(len(top) == 1 and all(len(m.parts) >= 3 for m in files)
                and next(iter(top)).lower() not in SPLIT_FOLDERS)
    paths = {m.index: m.parts[strip:] for m in files}
    split_layout = any(len(p) == 3 and p[0].lower() in SPLIT_FOLDERS for p in paths.values())
    found: dict[str, dict[str, list[Member]]] = {}
    for member in files:
        parts = paths[member.index]
        if split_layout and (len(parts) != 3 or parts[0].lower() not in SPLIT_FOLDERS):
            raise UploadError(f"file: {member.name}", "is not inside train/<class>/, "
                              "val/<class>/ or test/<class>/; with split folders every image "
                              "needs one")
        if not split_layout and len(parts) != 2:
            where = "is not in a class folder" if len(parts) < 2 else "is nested too deep"
            raise UploadError(f"file: {member.name}", f"{where}; lay images out as {LAYOUT}")
        split = SPLIT_FOLDERS[parts[0].lower()] if split_layout else "train"
        found.setdefault(split, {}).setdefault(parts[-2], []).append(member)
    if "train" not in found:
        raise UploadError("file", f"has {', '.join(sorted(found))} folders but no train/ folder "
                          "of class folders")
    class_names = sorted(found["train"])
    _check_empty_folders(members, strip, split_layout, found)
    for split, classes in found.items():
        extra = sorted(set(classes) - set(class_names))
        if extra:
            raise UploadError("file", f"{split}/ has class folder(s) {', '.join(extra)} that "
                              "train/ lacks; every split needs the same classes")
        missing = sorted(set(class_names) - set(classes))
        if missing:
            notes.append(f"{split}/ has no images of {', '.join(missing[:10])}")
    plan = []
    for split, classes in found.items():
        slot = 0
        for label, name in enumerate(class_names):
            for member in sorted(classes.get(name, []), key=lambda m: m.name):
                plan.append(Planned(member, split, label, slot))
                slot += 1
    return sorted(plan, key=lambda p: p.member.index), class_names


def _check_empty_folders(members: list[Member], strip: int, split_layout: bool,
                         found: dict[str, dict[str, list[Member]]]) -> None:
    """A class folder the archive lists (a directory entry) with no image in it."""
    depth = 2 if split_layout else 1
    for member in members:
        parts = member.parts[strip:]
        if not member.is_dir or is_skipped(member) or len(parts) != depth:
            continue
        if split_layout and parts[0].lower() not in SPLIT_FOLDERS:
            continue
        split = SPLIT_FOLDERS[parts[0].lower()] if split_layout else "train"
        if parts[-1] not in found.get(split, {}):
            raise UploadError(f"file: {member.name}", "is a class folder with no images; add "
                              "images or remove the folder")


def _decode_all(archive: Archive, plan: list[Planned], num_classes: int,
                options: ParseOptions, notes: list[str]) -> dict[str, np.ndarray]:
    counts = {split: sum(p.split == split for p in plan) for split in SPLITS}
    channels = 1 if options.color == "grayscale" else 3
    size = options.image_size
    notes.append(f"images read as {options.color}" + (
        f", resized to {size[0]}x{size[1]}" if size else ""))
    if size is not None:  # known before any image is decoded
        check_parsed_bytes((len(plan), channels, *size), options.max_parsed_bytes,
                           f"{len(plan):,} images resized to {size[0]}x{size[1]}",
                           field="image_size")
    elif plan:  # the first image's header says what all of them must be
        first = _header_size(archive.read(plan[0].member))
        if first is not None:
            check_parsed_bytes((len(plan), channels, *first), options.max_parsed_bytes,
                               "the images")
    arrays: dict[str, np.ndarray] = {}
    first_name = ""
    for planned in plan:
        name = planned.member.name
        image = _decode(archive.read(planned.member), name, options, options.image_size)
        if not arrays:
            size, first_name = image.shape[1:], name
            check_parsed_bytes((len(plan), channels, *size), options.max_parsed_bytes,
                               "the images")
            for split, n in counts.items():
                if n:
                    arrays[f"x_{split}"] = np.empty((n, channels, *size), np.float32)
                    arrays[f"y_{split}"] = np.empty(n, np.int64)
        elif image.shape[1:] != tuple(size):
            raise UploadError("image_size", f"the images differ in size: {first_name} is "
                              f"{size[1]}x{size[0]} but {name} is {image.shape[2]}x"
                              f"{image.shape[1]} (width x height); give image_size "
                              "(height, width) to resize them all")
        arrays[f"x_{planned.split}"][planned.slot] = image
        arrays[f"y_{planned.split}"][planned.slot] = planned.label
    return arrays


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from an image's header, nothing decoded; None when unreadable (the
    decode then says why)."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as opened:
            return opened.size[1], opened.size[0]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None


def _decode(data: bytes, name: str, options: ParseOptions,
            size: tuple[int, int] | None) -> np.ndarray:
    """(C, H, W) float32 of one image."""
    field = f"file: {name}"
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as opened:
                width, height = opened.size  # from the header; nothing decoded yet
                if width * height > options.max_image_pixels:
                    raise _bomb(field, width, height, options.max_image_pixels)
                image = opened.convert("L" if options.color == "grayscale" else "RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(field, 0, 0, options.max_image_pixels) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UploadError(field, f"cannot be decoded as a PNG or JPEG image ({exc}); replace "
                          "or remove it") from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _bomb(field: str, width: int, height: int, cap: int) -> UploadError:
    seen = f"is {width}x{height} pixels, " if width else "has "
    return UploadError(field, f"{seen}more than the limit of {cap:,} pixels per image "
                       "(a decompression bomb, or simply too large); shrink it", status=413)
