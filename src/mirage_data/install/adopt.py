"""Adopting what is already in a ``MIRAGE_DATA`` tree: files with no inventory record.

Most users already have a tree filled by Mirage's own downloader (darks decompressed beside
their leftover ``.fits.gz``, tarballs left in the download folder and unpacked) or copied from a
colleague; and an inventory can be lost or damaged. Instead of fetching such files again,
`adopt_tree` checks each one and records it (provenance ``adopted``):

- a dark whose ``.fits`` is there is checked (content, and against its leftover ``.fits.gz``
  when there is one); a leftover ``.fits.gz`` with no (or a wrong) ``.fits`` is decompressed
  locally, through the same verified staging as a download;
- an archive whose leftover tarball is there is compared member by member with the layout, and
  unpacked again locally where the layout differs; without the tarball, the files of the
  archive's own folder are checked and recorded (where several archives share a folder, a
  file goes to the archive whose detectors its name carries);
- anything that fails its check is left for the download to fetch (`AdoptReport.refused`).

`reclaim_leftovers` then removes the leftover ``.gz`` and tarball copies whose installed
counterparts verify, giving back the disk Mirage's downloader left doubled.

Every file is checked for what it is with `install.content` before it is recorded
(`check_installed_file`; a plain FITS sanity check stands in where that module is absent).

Examples
--------
A tree whose mirage-data state was lost is adopted again, nothing fetched:

>>> import shutil
>>> from mirage_data import download_reffiles
>>> from mirage_data.collection.catalog import load_catalog
>>> catalog = load_catalog(sample_catalog)
>>> result = download_reffiles("reffiles", "fgs", single_dark=True, skip_psfs=True, mirror=server_url,
...                            catalog=catalog, quiet=True)
>>> shutil.rmtree("reffiles/mirage_data/.mirage-data")
>>> mirage_data = Path("reffiles/mirage_data")
>>> adopt_tree(mirage_data, Inventory.load(mirage_data), catalog.entries).summary()
'3 files adopted, 0 unpacked from leftover copies, 0 refused'
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mirage_data.collection.catalog import CatalogEntry
from mirage_data.collection.layout import psf_detector_name

from .inventory import ADOPTED, InstalledFile, Inventory, Record, sha256_of
from .state import STATE_DIR, archives_dir
from .unpack import (
    CHUNK,
    CorruptDownload,
    GunzipReader,
    StagedInstall,
    UnsafeArchive,
    extract_archive,
    member_destination,
)

FITS_BLOCK = 2880


@dataclass
class AdoptReport:
    """What `adopt_tree` did.

    Attributes
    ----------
    adopted : list of str
        Catalog paths recorded from files found in the layout as they were.
    unpacked : list of str
        Catalog paths installed locally from a leftover ``.fits.gz`` or tarball.
    refused : list of (str, str)
        Catalog paths found but not accepted, and why (a download fetches them again).
    """

    adopted: list[str] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.adopted)} files adopted, {len(self.unpacked)} unpacked from leftover copies, "
            f"{len(self.refused)} refused"
        )


class _Refused(Exception):
    pass


# --------------------------------------------------------------------------- content checks


def check_installed_file(path: Path, entry: CatalogEntry, member: str | None = None) -> str | None:
    """Why a file found in the layout cannot be accepted for *entry* (None: accepted).

    *member* is the file's path in the layout when it belongs to an archive. Uses the content
    checks of `install.content` (``check_for``/``check_file``); where those are not available,
    a plain sanity check stands in: a ``.fits`` file must be FITS (``SIMPLE = T``, whole
    2880-byte blocks) of the entry's instrument, any other file non-empty.
    """
    try:
        from .content import WrongContent, check_file, check_for
    except ImportError:  # the hook: without content checks, sanity only
        return _fits_sanity(path, entry)
    try:
        check_file(path, check_for(entry, member if entry.is_archive else None))
    except WrongContent as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def _fits_sanity(path: Path, entry: CatalogEntry) -> str | None:
    try:
        st = path.stat()
        if st.st_size == 0:
            return "empty"
        if not path.name.endswith(".fits"):
            return None
        with open(path, "rb") as f:
            head = f.read(FITS_BLOCK)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head.startswith(b"SIMPLE  =") or head[8:30].strip() != b"T":
        return "not a FITS file" + (" (an HTML page)" if b"<html" in head[:512].lower() else "")
    if st.st_size % FITS_BLOCK:
        return f"truncated FITS file ({st.st_size} bytes is not a whole number of 2880-byte blocks)"
    cards = {head[i : i + 8].strip(): head[i + 10 : i + 80] for i in range(0, FITS_BLOCK, 80)}
    instrument = cards.get(b"INSTRUME", b"").split(b"/")[0].strip().strip(b"'").strip().decode("ascii", "replace")
    if entry.is_dark and instrument and instrument.lower() != entry.instrument:
        return f"INSTRUME is {instrument}, expected {entry.instrument.upper()}"
    return None


# --------------------------------------------------------------------------- where copies sit


def leftover_copies(mirage_data: Path, entry: CatalogEntry) -> list[Path]:
    """Existing copies of the remote file itself (a ``.fits.gz`` or tarball) in or beside the tree.

    Mirage's downloader leaves a dark's ``.fits.gz`` beside its ``.fits`` and tarballs in the
    download folder (the one that holds ``mirage_data``); ``--keep-archives`` keeps them below
    ``.mirage-data/archives``.
    """
    mirage_data = Path(mirage_data)
    candidates = [
        mirage_data / entry.relative_path,
        mirage_data.parent / entry.name,
        mirage_data / entry.name,
        archives_dir(mirage_data) / entry.relative_path,
    ]
    installed = mirage_data / entry.install_path
    seen: list[Path] = []
    for path in candidates:
        if path != installed and path not in seen and path.is_file():
            seen.append(path)
    return seen


def _archive_folder_files(mirage_data: Path, entry: CatalogEntry, entries: Iterable[CatalogEntry]) -> list[str]:
    """Files in an archive's own folder that are its, when no tarball says which: all of them,
    except sub-folders that are another archive's, and, where several archives share the
    folder, only those whose name carries one of this archive's detectors."""
    folder = mirage_data / entry.install_path
    if not folder.is_dir():
        return []
    others = [e for e in entries if e.is_archive and e.relative_path != entry.relative_path]
    other_folders = {e.install_path for e in others if e.install_path != entry.install_path}
    sharing = [e for e in others if e.install_path == entry.install_path]
    names = None
    if sharing:
        if not entry.detectors:
            return []
        names = tuple(f"{entry.instrument}_{psf_detector_name(entry.instrument, d)}_" for d in entry.detectors)
    found = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(mirage_data).as_posix()
        dirs[:] = sorted(
            d for d in dirs if f"{rel_root}/{d}" not in other_folders and not d.startswith(".") and d != STATE_DIR
        )
        for name in sorted(files):
            if name.startswith(".") or name.endswith((".gz", ".tgz", ".tar")):
                continue
            if names is not None and not name.lower().startswith(names):
                continue
            found.append(f"{rel_root}/{name}")
    return found


def present_in_layout(mirage_data: Path, entry: CatalogEntry, entries: Iterable[CatalogEntry] = ()) -> bool:
    """True if something of *entry* is in the tree (a quick look, no reading)."""
    if leftover_copies(mirage_data, entry):
        return True
    if entry.is_archive:
        return bool(_archive_folder_files(mirage_data, entry, entries))
    return (Path(mirage_data) / entry.install_path).is_file()


def untracked_entries(mirage_data: Path, inventory: Inventory, entries: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """Entries with no inventory record of which something is in the tree."""
    entries = list(entries)
    return [e for e in entries if inventory.get(e.relative_path) is None and present_in_layout(mirage_data, e, entries)]


# --------------------------------------------------------------------------- adopting


class _HashingFile:
    """Reads a file, counting and hashing the bytes."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")
        self.hasher = hashlib.sha256()
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(CHUNK if n is None or n < 0 else n)
        self.hasher.update(data)
        self.position += len(data)
        return data

    def close(self) -> None:
        self._f.close()


def _check_source(entry: CatalogEntry, source: _HashingFile) -> None:
    if entry.size is not None and source.position != entry.size:
        raise CorruptDownload(f"{source.position} bytes where the catalog says {entry.size}")
    if entry.sha256 and source.hasher.hexdigest() != entry.sha256:
        raise CorruptDownload("sha256 differs from the catalog's")


def _gunzip_digest(path: Path, entry: CatalogEntry) -> tuple[int, str, _HashingFile]:
    """Size and sha256 of the decompressed content of a ``.gz`` file (checked to its end)."""
    source = _HashingFile(path)
    try:
        reader = GunzipReader(source)
        h, n = hashlib.sha256(), 0
        while block := reader.read(CHUNK):
            h.update(block)
            n += len(block)
    finally:
        source.close()
    _check_source(entry, source)
    return n, h.hexdigest(), source


def _tar_members(path: Path, entry: CatalogEntry) -> tuple[dict[str, tuple[int, str]], _HashingFile]:
    """Install path -> (size, sha256) of every file of a tarball (read to its end)."""
    members: dict[str, tuple[int, str]] = {}
    source = _HashingFile(path)
    try:
        gz = GunzipReader(source)
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise UnsafeArchive(f"member {member.name!r} is not a plain file")
                dest = member_destination(member.name, entry.install_path)
                f = tar.extractfile(member)
                assert f is not None
                h = hashlib.sha256()
                while block := f.read(CHUNK):
                    h.update(block)
                members[dest] = (member.size, h.hexdigest())
        while gz.read(CHUNK):
            pass
    except tarfile.TarError as exc:
        raise CorruptDownload(f"damaged tar archive: {exc}") from None
    finally:
        source.close()
    _check_source(entry, source)
    return members, source


class Adopter:
    """Check and record the files of one tree that the inventory does not know.

    Parameters
    ----------
    mirage_data : Path
    inventory : Inventory
        Records are added to it (and saved) as files are adopted.
    catalog_entries : iterable of CatalogEntry
        The whole catalog (to tell which archive a shared folder's files belong to).
    catalog_version : str
    message : callable, optional
        Called with a line of text for each file refused.
    """

    def __init__(
        self,
        mirage_data: Path,
        inventory: Inventory,
        catalog_entries: Iterable[CatalogEntry],
        *,
        catalog_version: str = "",
        message: Callable[[str], None] | None = None,
        copies_only: bool = False,
    ) -> None:
        self.copies_only = copies_only
        self.mirage_data = Path(mirage_data)
        self.inventory = inventory
        self.catalog_entries = list(catalog_entries)
        self.catalog_version = catalog_version
        self.message = message or (lambda text: None)

    def run(self, entries: Iterable[CatalogEntry]) -> AdoptReport:
        report = AdoptReport()
        for entry in entries:
            try:
                how = self._adopt_one(entry)
            except (_Refused, CorruptDownload, UnsafeArchive, OSError) as exc:
                reason = str(exc) if not isinstance(exc, OSError) else f"{exc.strerror or exc} ({exc.filename})"
                report.refused.append((entry.relative_path, reason))
                self.message(f"{entry.relative_path}: not adopted ({reason}); it will be fetched")
                continue
            (report.unpacked if how == "unpacked" else report.adopted).append(entry.relative_path)
        return report

    def _record(self, entry: CatalogEntry, files: list[InstalledFile], source: str, size: int, digest: str) -> None:
        self.inventory.add(
            Record(
                relative_path=entry.relative_path,
                source=source,
                source_size=size,
                source_sha256=digest,
                files=files,
                catalog_version=self.catalog_version,
                origin=ADOPTED,
            )
        )

    def _adopt_one(self, entry: CatalogEntry) -> str:
        leftovers = leftover_copies(self.mirage_data, entry)
        if self.copies_only and not leftovers:
            raise _Refused("no leftover copy to restore it from")
        if entry.is_archive:
            return self._adopt_archive(entry, leftovers)
        return self._adopt_file(entry, leftovers)

    def _adopt_file(self, entry: CatalogEntry, leftovers: list[Path]) -> str:
        installed = self.mirage_data / entry.install_path
        problem = check_installed_file(installed, entry) if installed.is_file() else "missing"
        compressed = entry.relative_path.endswith(".gz")
        for copy in leftovers if compressed else []:
            try:
                n, digest, source = _gunzip_digest(copy, entry)
            except CorruptDownload as exc:
                self.message(f"{copy}: leftover copy not used ({exc})")
                continue
            if problem is None and installed.stat().st_size == n and sha256_of(installed) == digest:
                self._record(
                    entry,
                    [InstalledFile(entry.install_path, n, digest)],
                    str(copy),
                    source.position,
                    source.hasher.hexdigest(),
                )
                return "adopted"
            return self._unpack(entry, copy)
        if not compressed and leftovers and problem is not None:
            return self._unpack(entry, leftovers[0])
        if self.copies_only:
            raise _Refused("no usable leftover copy to restore it from")
        if problem is not None:
            raise _Refused(problem if problem != "missing" else "only a damaged leftover copy is there")
        st_size = installed.stat().st_size
        digest = sha256_of(installed)
        self._record(entry, [InstalledFile(entry.install_path, st_size, digest)], "", 0, "")
        return "adopted"

    def _adopt_archive(self, entry: CatalogEntry, leftovers: list[Path]) -> str:
        for copy in leftovers:
            try:
                members, source = _tar_members(copy, entry)
            except (CorruptDownload, UnsafeArchive) as exc:
                self.message(f"{copy}: leftover archive not used ({exc})")
                continue
            files = []
            for path, (size, digest) in sorted(members.items()):
                target = self.mirage_data / path
                if not (target.is_file() and target.stat().st_size == size and sha256_of(target) == digest):
                    return self._unpack(entry, copy)
                files.append(InstalledFile(path, size, digest))
            self._record(entry, files, str(copy), source.position, source.hasher.hexdigest())
            return "adopted"
        if self.copies_only:
            raise _Refused("no usable leftover copy to restore it from")
        paths = _archive_folder_files(self.mirage_data, entry, self.catalog_entries)
        if not paths:
            raise _Refused("its files cannot be told apart from other archives' without the tarball")
        files = []
        for path in paths:
            problem = check_installed_file(self.mirage_data / path, entry, path)
            if problem is not None:
                raise _Refused(f"{path}: {problem}")
            target = self.mirage_data / path
            files.append(InstalledFile(path, target.stat().st_size, sha256_of(target)))
        self._record(entry, files, "", 0, "")
        return "adopted"

    def _unpack(self, entry: CatalogEntry, copy: Path) -> str:
        """Install *entry* from a local copy of the remote file, as a download would."""
        staging = StagedInstall(self.mirage_data, entry.relative_path)
        source = _HashingFile(copy)
        try:
            if entry.is_archive:
                extract_archive(source, staging, entry)
            elif entry.relative_path.endswith(".gz"):
                staging.add_stream(GunzipReader(source), entry.install_path)
            else:
                staging.add_stream(source, entry.install_path)
            _check_source(entry, source)
            for staged, record in staging.files:
                problem = check_installed_file(staged, entry, record.path)
                if problem is not None:
                    raise _Refused(f"the leftover copy {copy} holds a bad {record.path}: {problem}")
            files = staging.commit()
        except BaseException:
            staging.discard()
            raise
        finally:
            source.close()
        self._record(entry, files, str(copy), source.position, source.hasher.hexdigest())
        return "unpacked"


def adopt_tree(
    mirage_data: Path,
    inventory: Inventory,
    entries: Iterable[CatalogEntry],
    *,
    catalog_entries: Iterable[CatalogEntry] | None = None,
    catalog_version: str = "",
    message: Callable[[str], None] | None = None,
    copies_only: bool = False,
) -> AdoptReport:
    """Check and record the files of *entries* that are in the tree but have no record.

    Parameters
    ----------
    mirage_data : Path
        The ``MIRAGE_DATA`` folder (writable: records are saved, leftover copies unpacked).
    inventory : Inventory
    entries : iterable of CatalogEntry
        The entries to look for (e.g. a download's selection).
    catalog_entries : iterable of CatalogEntry, optional
        The whole catalog (default: *entries*).
    catalog_version : str
    message : callable, optional
        Receives a line for each file refused.
    copies_only : bool
        Accept only files restored from (or matching) a leftover copy of the remote file, not
        files merely found in the layout (used by repair: a damaged file may still look sane).

    Returns
    -------
    AdoptReport
    """
    entries = list(entries)
    todo = untracked_entries(mirage_data, inventory, catalog_entries or entries)
    wanted = {e.relative_path for e in entries}
    todo = [e for e in todo if e.relative_path in wanted]
    if todo and message is not None:
        message(f"checking {len(todo)} files already in {mirage_data} (recorded, not fetched again)")
    adopter = Adopter(
        mirage_data,
        inventory,
        catalog_entries or entries,
        catalog_version=catalog_version,
        message=message,
        copies_only=copies_only,
    )
    return adopter.run(todo)


def reclaim_leftovers(
    mirage_data: Path, inventory: Inventory, entries: Iterable[CatalogEntry]
) -> list[tuple[Path, int]]:
    """Remove the leftover ``.gz`` and tarball copies of *entries* whose installed files verify
    (re-hashed against the inventory); copies kept on purpose below ``.mirage-data/archives``
    are left alone. Returns the paths removed and their sizes."""
    mirage_data = Path(mirage_data)
    kept = archives_dir(mirage_data)
    removed: list[tuple[Path, int]] = []
    for entry in entries:
        record = inventory.get(entry.relative_path)
        if record is None or not record.files:
            continue
        copies = [p for p in leftover_copies(mirage_data, entry) if kept not in p.parents]
        copies = [p for p in copies if not any((mirage_data / f.path) == p for f in record.files)]
        if not copies:
            continue
        if inventory.verify([entry.relative_path], workers=1):
            continue  # not verified: the copy may be the only good one
        for path in copies:
            size = path.stat().st_size
            path.unlink()
            removed.append((path, size))
    return removed
