"""Turning a stream of downloaded bytes into files of the Mirage layout.

Darks (``.fits.gz``) are decompressed while they stream, with python-isal, into a temporary
file below ``MIRAGE_DATA/.mirage-data/tmp`` and moved to their final name only once the gzip
stream has been checked to its end (CRC and length). Tarballs are unpacked from the stream
into a staging folder, member by member, refusing anything unsafe (absolute paths, ``..``,
links leaving the tree, devices); the staged files are moved into the layout only when the
whole archive was read and verified. So a file in the layout is either complete or absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from isal import isal_zlib

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
    CRC32 and length.
    """

    def __init__(self, source) -> None:
        self.source = source
        self._d = isal_zlib.decompressobj(31)
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = CHUNK if n is None or n < 0 else n
        while not self._buffer and not self._eof:  # short reads are fine; b"" means the end
            self._fill(want)
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        return data

    def _fill(self, want: int) -> None:
        if self._d.unconsumed_tail:
            compressed = self._d.unconsumed_tail
        else:
            compressed = self.source.read(CHUNK)
            if not compressed:
                if not self._d.eof:
                    raise CorruptDownload("the gzip stream ends early (truncated download)")
                self._eof = True
                return
        try:
            out = self._d.decompress(compressed, want)
        except isal_zlib.error as exc:
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


def _write_stream(reader, path: Path) -> tuple[int, str]:
    """Copy *reader* to a new file at *path*; return (bytes, sha256)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            out.write(data)
            h.update(data)
            size += len(data)
    return size, h.hexdigest()


def _place(staged: Path, final: Path) -> None:
    """Atomically move a finished file into the layout."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


class StagedInstall:
    """Files written to temporary names, waiting to be moved into the layout together."""

    def __init__(self, mirage_data: Path, label: str) -> None:
        self.mirage_data = mirage_data
        self.root = Path(os.path.join(tmp_dir(mirage_data), label.replace("/", "_") + f".{os.getpid()}.staging"))
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.files: list[tuple[Path, InstalledFile]] = []

    def add_stream(self, reader, relative: str) -> InstalledFile:
        """Write *reader* to a staged file that will install at *relative* (to MIRAGE_DATA)."""
        staged = self.root / f"{len(self.files):05d}"
        size, digest = _write_stream(reader, staged)
        record = InstalledFile(relative, size, digest)
        self.files.append((staged, record))
        return record

    def add_link(self, target: Path, relative: str, size: int, digest: str) -> InstalledFile:
        staged = self.root / f"{len(self.files):05d}"
        os.symlink(target, staged)
        record = InstalledFile(relative, size, digest)
        self.files.append((staged, record))
        return record

    def commit(self) -> list[InstalledFile]:
        """Move every staged file to its final place; return their records."""
        for staged, record in self.files:
            _place(staged, self.mirage_data / record.path)
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


def extract_archive(reader, staging: StagedInstall, default_folder: str) -> list[str]:
    """Unpack a ``.tar.gz`` stream into *staging*, member by member.

    Regular files and folders only; symbolic or hard links, devices and FIFOs are refused, as
    are members that would land outside MIRAGE_DATA. Returns the installed relative paths.
    """
    installed: list[str] = []
    gz = GunzipReader(reader)
    try:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    # Folders are made as files need them; an unsafe name is still refused.
                    member_destination(member.name.rstrip("/") + "/.", default_folder, folder=True)
                    continue
                dest = member_destination(member.name, default_folder)
                if member.issym() or member.islnk():
                    raise UnsafeArchive(
                        f"member {member.name!r} is a link (to {member.linkname!r}); "
                        "archives may hold only files and folders"
                    )
                if not member.isfile():
                    raise UnsafeArchive(f"member {member.name!r} is a device, FIFO or other special file")
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                staging.add_stream(fileobj, dest)
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
