"""Turning a stream of downloaded bytes into files of the Mirage layout.

Darks (``.fits.gz``) are decompressed while they stream, with python-isal, into a temporary
file below ``MIRAGE_DATA/.mirage-data/tmp`` and moved to their final name only once the gzip
stream has been checked to its end (CRC and length) and the content checked for what it is
(`content`). Decompression is bounded: by the FITS headers of a dark as they arrive, and for
every file by a ratio to its compressed size. Tarballs are unpacked from the stream into a
staging folder, member by member, refusing anything unsafe (absolute paths, ``..``, links,
devices) and anything outside the folder of the archive's own group; the staged files are moved
into the layout only when the whole archive was read and verified, all of them or none. So a
file in the layout is either complete and checked, or absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from isal import isal_zlib

from mirage_data.io.atomic import temporary_path

from .content import WrongContent, check_for, describe_start
from .inventory import InstalledFile
from .state import STATE_DIR, tmp_dir

CHUNK = 1 << 20  # bytes per read when unpacking or copying


class CorruptDownload(Exception):
    """The bytes are not what they should be (truncated or damaged gzip, wrong checksum)."""


class UnsafeArchive(Exception):
    """A tarball member that would write outside the layout, or is not a plain file."""


class GunzipReader:
    """A file object decompressing a gzip stream read from *source* (all members).

    Raises `CorruptDownload` if the stream is damaged or ends early; isal checks each member's
    CRC32 and length. Raises `WrongContent` if the stream is not gzip at all (saying what it
    is: an HTML page...) or decompresses to more than *limit* bytes (an int, or a callable
    giving the limit once the compressed size is known; None: no limit).
    """

    def __init__(self, source, limit: int | Callable[[], int | None] | None = None) -> None:
        self.source = source
        self.limit = limit
        self.output = 0  # decompressed bytes so far
        self._d = isal_zlib.decompressobj(31)
        self._buffer = b""
        self._eof = False
        self._start = b""  # the first compressed bytes, to say what arrived if it is not gzip

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = CHUNK if n is None or n < 0 else n
        while not self._buffer and not self._eof:  # short reads are fine; b"" means the end
            self._fill(want)
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        self.output += len(data)
        limit = self.limit() if callable(self.limit) else self.limit
        if limit is not None and self.output > limit:
            raise WrongContent(
                f"decompresses to more than {limit} bytes, far more than its compressed size allows "
                f"(a decompression bomb?); stopped after {self.output} bytes"
            )
        return data

    def _fill(self, want: int) -> None:
        if self._d.unconsumed_tail:
            compressed = self._d.unconsumed_tail
        else:
            compressed = self.source.read(CHUNK)
            if len(self._start) < 2048:
                self._start += compressed[: 2048 - len(self._start)]
            if not compressed:
                if not self._d.eof:
                    raise CorruptDownload("the gzip stream ends early (truncated download)")
                self._eof = True
                return
        try:
            out = self._d.decompress(compressed, want)
        except isal_zlib.error as exc:
            if not self._start.startswith(b"\x1f\x8b"):
                what = describe_start(self._start)
                raise WrongContent(what if what.startswith("the server") else f"not gzip data: {what}") from None
            raise CorruptDownload(f"damaged gzip data: {exc}") from None
        self._buffer += out
        if self._d.eof:
            rest = self._d.unused_data
            if rest.strip(b"\0"):  # another gzip member follows (concatenated gzip)
                self._d = isal_zlib.decompressobj(31)
                self._d_pending(rest)
            else:
                # The trailer was checked; drain the source so its length and hash are complete.
                while self.source.read(CHUNK):
                    pass
                self._eof = True

    def _d_pending(self, data: bytes) -> None:
        try:
            self._buffer += self._d.decompress(data)
        except isal_zlib.error as exc:
            raise CorruptDownload(f"damaged gzip data: {exc}") from None


def _write_stream(reader, path: Path, check=None) -> tuple[int, str]:
    """Copy *reader* to a new file at *path*, passing every block through *check* (a content
    check of `content`) before it is written; return (bytes, sha256)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            if check is not None:
                check.feed(data)
            out.write(data)
            h.update(data)
            size += len(data)
    if check is not None:
        check.finish()
    return size, h.hexdigest()


def _place(staged: Path, final: Path) -> None:
    """Atomically move a finished file into the layout."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


class StagedInstall:
    """Files written to temporary names, waiting to be moved into the layout together.

    `commit` installs all of them or none: it first checks that every file has a place (no
    file where a folder is needed, no folder where a file goes), then moves them in, keeping
    any file it replaces until the last one is in, and puts everything back if a move fails.
    """

    def __init__(self, mirage_data: Path, label: str) -> None:
        self.mirage_data = mirage_data
        # Host and pid in the name: a later run removes the staging of a dead one (state.py).
        self.root = temporary_path(tmp_dir(mirage_data) / (label.replace("/", "_") + ".staging"))
        self.root.mkdir(parents=True)
        self.files: list[tuple[Path, InstalledFile]] = []

    def add_stream(self, reader, relative: str, check=None) -> InstalledFile:
        """Write *reader* to a staged file that will install at *relative* (to MIRAGE_DATA),
        checking its content with *check* (see `content.check_for`) as it streams."""
        staged = self.root / f"{len(self.files):05d}"
        size, digest = _write_stream(reader, staged, check)
        record = InstalledFile(relative, size, digest)
        self.files.append((staged, record))
        return record

    def add_link(self, target: Path, relative: str, size: int, digest: str) -> InstalledFile:
        staged = self.root / f"{len(self.files):05d}"
        os.symlink(target, staged)
        record = InstalledFile(relative, size, digest)
        self.files.append((staged, record))
        return record

    def check_places(self) -> None:
        """Raise `UnsafeArchive` unless every staged file can go to its place in the layout."""
        paths = [record.path for _, record in self.files]
        folders = {str(p) for path in paths for p in PurePosixPath(path).parents}
        for path in paths:
            if path in folders:
                raise UnsafeArchive(f"{path!r} is both a file and a folder in the archive")
            final = self.mirage_data / path
            if final.is_dir() and not final.is_symlink():
                raise UnsafeArchive(f"{path!r} would replace a folder of the layout")
            for parent in PurePosixPath(path).parents:
                where = self.mirage_data / parent
                if str(parent) != "." and (where.is_symlink() or (where.exists() and not where.is_dir())):
                    raise UnsafeArchive(f"{path!r} needs the folder {str(parent)!r}, which is a file in the layout")

    def commit(self) -> list[InstalledFile]:
        """Move every staged file to its final place, all or none; return their records."""
        self.check_places()
        backups = self.root / "replaced"
        backups.mkdir()
        done: list[tuple[Path, Path | None]] = []  # (final, backup of what it replaced)
        try:
            for i, (staged, record) in enumerate(self.files):
                final = self.mirage_data / record.path
                final.parent.mkdir(parents=True, exist_ok=True)
                backup = None
                if final.is_symlink() or final.exists():
                    backup = backups / f"{i:05d}"
                    os.replace(final, backup)
                done.append((final, backup))
                os.replace(staged, final)
        except BaseException:
            for final, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, final)
                    else:
                        final.unlink(missing_ok=True)
                except OSError:
                    pass
            self.discard()
            raise
        self.discard()
        return [record for _, record in self.files]

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- archives


def member_destination(name: str, default_folder: str, folder: bool = False) -> str:
    """Where a tarball member installs, relative to MIRAGE_DATA, or raise `UnsafeArchive`.

    Members carry paths beginning ``mirage_data/`` (the collection's convention); others go
    below the archive's default folder.

    >>> member_destination("mirage_data/nircam/cosmic_ray_library/CRs.fits", "x")
    'nircam/cosmic_ray_library/CRs.fits'
    >>> member_destination("./CRs.fits", "fgs/cosmic_ray_library")
    'fgs/cosmic_ray_library/CRs.fits'
    """
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"member {name!r} has an absolute path")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} climbs out of the folder ('..')")
    if parts and parts[0] == "mirage_data":
        parts = parts[1:]
    else:
        parts = list(PurePosixPath(default_folder).parts) + parts
    if (not parts and not folder) or (parts and parts[0] == STATE_DIR):
        raise UnsafeArchive(f"member {name!r} has no place in the layout")
    return "/".join(parts)


def extract_archive(reader, staging: StagedInstall, entry, limit=None) -> list[str]:
    """Unpack the ``.tar.gz`` stream of catalog *entry* into *staging*, member by member.

    Regular files and folders only; symbolic or hard links, devices and FIFOs are refused, as
    are members that would land outside the folder of the archive's own group (so a cosmic-ray
    tarball cannot plant a dark where Mirage's glob would find it) and a name carried twice
    with different content. Each member's content is checked (`content.check_for`).
    Decompression stops beyond *limit* bytes (see `GunzipReader`). Returns the installed
    relative paths.
    """
    default_folder = entry.install_path
    installed: list[str] = []
    digests: dict[str, str] = {}
    gz = GunzipReader(reader, limit)
    try:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    # Folders are made as files need them; an unsafe name is still refused.
                    member_destination(member.name.rstrip("/") + "/.", default_folder, folder=True)
                    continue
                dest = member_destination(member.name, default_folder)
                if not (dest + "/").startswith(default_folder.rstrip("/") + "/"):
                    raise UnsafeArchive(
                        f"member {member.name!r} would write {dest!r}, outside {default_folder}/, "
                        f"the folder of the {entry.instrument} {entry.group.replace('_', ' ')}"
                    )
                if member.issym() or member.islnk():
                    raise UnsafeArchive(
                        f"member {member.name!r} is a link (to {member.linkname!r}); "
                        "archives may hold only files and folders"
                    )
                if not member.isfile():
                    raise UnsafeArchive(f"member {member.name!r} is a device, FIFO or other special file")
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                record = staging.add_stream(fileobj, dest, check_for(entry, dest))
                if dest in digests:
                    if digests[dest] != record.sha256:
                        raise UnsafeArchive(f"member {member.name!r} appears twice with different content")
                    staging.files.pop()  # an identical repeat: installed once
                    continue
                digests[dest] = record.sha256
                installed.append(dest)
        # Read past the end-of-archive blocks to the gzip trailer: that checks the CRC and
        # lets the caller count (and hash) every byte of the file.
        while gz.read(CHUNK):
            pass
    except tarfile.TarError as exc:
        raise CorruptDownload(f"damaged tar archive: {exc}") from None
    if not installed:
        raise CorruptDownload("the archive holds no files")
    return installed
