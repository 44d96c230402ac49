"""Reading zip and tar.gz archives member by member, as streams. Nothing is extracted: a
member is only ever opened by its index, so a member's name is never used as a path. Names
are still checked (absolute paths and `..` are refused, since they mean a hostile or broken
archive), tar links and devices are refused, and every byte inflated is counted against the
upload's Budget: first the sizes the archive declares, then the bytes actually read."""

from __future__ import annotations

import gzip
import io
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from core.uploads.limits import Budget
from core.uploads.parsed import UploadError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip; an empty zip
_DRIVE = re.compile(r"^[A-Za-z]:")
# What a corrupt or tampered member raises while it is read (zipfile: a bad CRC when the
# data does not match the declared size; zlib/gzip: bad deflate data; EOFError: truncated).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile, tarfile.TarError,
                OSError, NotImplementedError, RuntimeError)
ArchiveKind = Literal["zip", "tar.gz"]


@dataclass(frozen=True)
class Member:
    index: int
    name: str  # normalised: relative, "/"-separated, no "" "." or ".." parts
    size: int  # as the archive declares it
    is_dir: bool

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))

    @property
    def basename(self) -> str:
        return self.parts[-1]


class CappedReader(io.RawIOBase):
    """A stream that charges every byte it returns to a Budget, and turns read errors of
    the stream below into an UploadError that names the member."""

    def __init__(self, raw: BinaryIO, budget: Budget, what: str) -> None:
        super().__init__()
        self._raw = raw
        self._budget = budget
        self.what = what
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            n = self._raw.readinto(buffer)
        except _READ_ERRORS as exc:
            raise UploadError(f"file: {self.what}", f"cannot be read ({exc}); the file is "
                              "corrupt, truncated, or its headers do not match its data") from exc
        self.delivered += n
        self._budget.charge(n)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def read_exactly(stream: BinaryIO, n: int) -> bytearray:
    """n bytes, or fewer only at the end of the stream (read in place: no second copy)."""
    buffer = bytearray(n)
    got = 0
    with memoryview(buffer) as view:
        while got < n:
            k = stream.readinto(view[got:])
            if not k:
                break
            got += k
    del buffer[got:]
    return buffer


def maybe_gunzip(stream: BinaryIO, budget: Budget, what: str) -> BinaryIO:
    """The stream itself, or its inflated content when it starts with the gzip magic; the
    inflated bytes are charged too (a gzip declares no size that can be trusted)."""
    buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return CappedReader(gzip.GzipFile(fileobj=buffered, mode="rb"), budget, what)
    return buffered


def safe_name(raw: str) -> str:
    """A member name checked and normalised; refused when it could escape a folder."""
    name = raw.replace("\\", "/")  # zips made on Windows
    if "\0" in name or name.startswith("/") or _DRIVE.match(name):
        raise UploadError("file", f"archive member {raw!r} has an absolute path; an archive "
                          "must hold relative paths only")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UploadError("file", f"archive member {raw!r} has a '..' component; an archive "
                          "must hold paths inside itself only")
    if not parts:
        raise UploadError("file", f"archive member {raw!r} has an empty name")
    return "/".join(parts)


def sniff(path: Path) -> ArchiveKind | None:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head in ZIP_MAGICS:
        return "zip"
    if head[:2] == GZIP_MAGIC:
        return "tar.gz"
    return None


class Archive:
    """An open zip or tar.gz: `members` in archive order, checked; `open(member)` a capped
    stream of one member. Read tar members in index order: a gzip stream seeks forward
    cheaply, backward only by inflating again from the start."""

    def __init__(self, path: Path, max_unpacked_bytes: int, max_members: int) -> None:
        self.budget = Budget(max_unpacked_bytes)
        self._max_members = max_members
        kind = sniff(path)
        if kind is None:
            raise UploadError("file", "is neither a zip nor a tar.gz archive")
        self.kind: ArchiveKind = kind
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._entries: list[zipfile.ZipInfo | tarfile.TarInfo] = []
        try:
            self.members = self._list_zip(path) if kind == "zip" else self._list_tar(path)
        except BaseException:
            self.close()
            raise
        seen: set[str] = set()
        for member in self.members:
            if member.name in seen:
                self.close()
                raise UploadError("file", f"archive member {member.name!r} appears twice; "
                                  "which one is meant is unclear")
            seen.add(member.name)

    def _count(self, count: int, declared: int) -> None:
        if count > self._max_members:
            raise UploadError("file", f"the archive holds more than {self._max_members:,} "
                              "members, the limit; upload fewer files", status=413)
        self.budget.check_declared(declared)

    def _list_zip(self, path: Path) -> list[Member]:
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise UploadError("file", f"is not a readable zip archive ({exc})") from exc
        self._count(len(infos), sum(info.file_size for info in infos))
        members = []
        for index, info in enumerate(infos):
            name = safe_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UploadError("file", f"archive member {name!r} is a symbolic link; "
                                  "archives must hold plain files only")
            if info.flag_bits & 0x1:
                raise UploadError("file", f"archive member {name!r} is encrypted; upload an "
                                  "archive without a password")
            self._entries.append(info)
            members.append(Member(index, name, info.file_size, info.is_dir()))
        return members

    def _list_tar(self, path: Path) -> list[Member]:
        members: list[Member] = []
        declared = 0
        try:
            self._tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 (closed by close())
            # One header at a time, with the caps checked before the next: skipping to the
            # next header inflates the previous member's data, so a member that declares a
            # huge size is refused before that happens.
            while (info := self._tar.next()) is not None:
                declared += info.size
                self._count(len(members) + 1, declared)
                name = safe_name(info.name)
                if not (info.isreg() or info.isdir()) or info.issparse():
                    raise UploadError("file", f"archive member {name!r} is a link, device or "
                                      "sparse file; archives must hold plain files only")
                self._entries.append(info)
                members.append(Member(len(members), name, info.size, info.isdir()))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise UploadError("file", f"is not a readable tar.gz archive ({exc})") from exc
        return members

    def open(self, member: Member) -> CappedReader:
        entry = self._entries[member.index]
        try:
            raw = (self._zip.open(entry) if self._zip is not None  # type: ignore[arg-type]
                   else self._tar.extractfile(entry))  # type: ignore[union-attr, arg-type]
        except _READ_ERRORS as exc:
            raise UploadError(f"file: {member.name}", f"cannot be read ({exc})") from exc
        if raw is None:
            raise UploadError(f"file: {member.name}", "is not a plain file")
        return CappedReader(raw, self.budget, member.name)  # type: ignore[arg-type]

    def read(self, member: Member) -> bytes:
        with self.open(member) as stream:
            return read_exactly(stream, member.size + 1)

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(path: Path, max_unpacked_bytes: int, max_members: int) -> Archive:
    return Archive(path, max_unpacked_bytes, max_members)
