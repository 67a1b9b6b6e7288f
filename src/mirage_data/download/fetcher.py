"""Fetching selected collection files and installing them, several at a time.

For each file: read it from its source (an HTTP(S) server, through `transfer`, or a local or
network-share mirror), verify it (length, gzip integrity, sha256 where the catalog knows it),
install it (`install`), and record it in the inventory. Files run in parallel (``jobs``),
largest first, so that the long transfers start early. A file that fails does not stop the
others; the report lists what failed and why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from mirage_data.collection.catalog import CatalogEntry
from mirage_data.install.content import WrongContent, allowance, check_file, check_for, installed_digest
from mirage_data.install.inventory import DOWNLOADED, LINKED, Inventory, Record, sha256_of
from mirage_data.install.state import archives_dir, partial_path
from mirage_data.install.unpack import (
    CorruptDownload,
    GunzipReader,
    StagedInstall,
    UnsafeArchive,
    extract_archive,
)
from mirage_data.progress import QuietProgress

from .errors import describe_os_error
from .partial import Cancelled, PartialFile, StreamRestarted
from .transfer import HttpDownload, LocalReader, StreamReader, TransferError, TransferOptions


@dataclass
class FileResult:
    """How one file went: ``ok``, or ``error`` with a message; bytes read from the source."""

    entry: CatalogEntry
    ok: bool
    error: str = ""
    bytes_fetched: int = 0


@dataclass
class FetchReport:
    """The outcome of a run."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    @property
    def bytes_fetched(self) -> int:
        return sum(r.bytes_fetched for r in self.results)


def local_mirror_path(base: str) -> Path | None:
    """The folder of a local mirror (a path or a ``file://`` URL), or None for HTTP(S).

    >>> local_mirror_path("file:///data/mirage"), local_mirror_path("https://x.org/m/")
    (PosixPath('/data/mirage'), None)
    """
    parsed = urlparse(base)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ValueError(f"unsupported mirror {base!r}: give an http(s):// URL, a file:// URL or a folder")
    return Path(base).expanduser()


class Fetcher:
    """Fetch, verify and install collection files into one ``MIRAGE_DATA`` folder.

    Parameters
    ----------
    mirage_data : Path
        The ``MIRAGE_DATA`` folder (created if needed).
    base : str
        Where the collection is served: an ``http(s)://`` base URL, a ``file://`` URL or a folder.
    inventory : Inventory
        Records installed files.
    options : TransferOptions
    progress : QuietProgress
    link : bool
        From a local mirror, link to files that need no unpacking (a ``.fits`` beside a
        ``.fits.gz``) instead of copying them.
    keep_archives : bool
        Keep the fetched ``.gz`` and ``.tar.gz`` files below ``.mirage-data/archives`` (laid
        out like the collection, so the folder can serve as a mirror).
    catalog_version : str
        Recorded with each file in the inventory.
    """

    def __init__(
        self,
        mirage_data: Path,
        base: str,
        inventory: Inventory,
        options: TransferOptions | None = None,
        progress: QuietProgress | None = None,
        *,
        link: bool = False,
        keep_archives: bool = False,
        catalog_version: str = "",
    ) -> None:
        self.mirage_data = Path(mirage_data)
        self.base = base
        self.local = local_mirror_path(base)
        self.inventory = inventory
        self.options = options or TransferOptions()
        self.progress = progress or QuietProgress()
        self.link = link
        self.keep_archives = keep_archives
        self.catalog_version = catalog_version
        self.cancel = threading.Event()
        self._file_stops: set[threading.Event] = set()  # one per running download
        self._file_stops_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one archive at a time checks for collisions and commits
        self._exact: dict[str, int] = {}  # exact transfer sizes, as the source tells them
        self._estimates: dict[str, int] = {}

    # ------------------------------------------------------------------ run

    def run(self, entries: list[CatalogEntry], sizes: dict[str, int] | None = None) -> FetchReport:
        """Fetch *entries* (largest first, ``jobs`` at a time). Ctrl-C stops promptly, leaving
        partial downloads resumable, and raises KeyboardInterrupt.

        *sizes* gives exact transfer sizes known beforehand (`Plan.source_sizes`); progress
        shows those, and each HTTP file's Content-Length once its first request answers,
        never the catalog's estimate as if it were a size."""
        report = FetchReport()
        self._exact = {e.relative_path: e.size for e in entries if e.size is not None}
        self._exact.update(sizes or {})
        if self.local is not None:  # a mirror folder tells every size
            for e in entries:
                try:
                    self._exact[e.relative_path] = (self.local / e.relative_path).stat().st_size
                except OSError:
                    pass
        self._estimates = {e.relative_path: e.expected_size for e in entries}
        order = sorted(entries, key=lambda e: self._exact.get(e.relative_path, e.expected_size), reverse=True)
        self.progress.start(len(order), self._total_size())
        t0 = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.options.jobs, thread_name_prefix="mirage-data")
        futures: dict[Future, CatalogEntry] = {}
        try:
            for entry in order:
                futures[pool.submit(self._fetch_one, entry)] = entry
            pending = set(futures)
            while pending:
                # A short timeout keeps the main thread responsive to Ctrl-C.
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    report.results.append(fut.result())
        except KeyboardInterrupt:
            self.cancel.set()
            with self._file_stops_lock:
                for stop in self._file_stops:
                    stop.set()
            report.cancelled = True
            for fut in futures:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + 5
            for fut in futures:
                if not fut.cancelled():
                    try:
                        fut.result(timeout=max(0.0, deadline - time.monotonic()))
                    except Exception:  # noqa: BLE001 - best effort on the way out
                        pass
            self.progress.stop()
            raise
        pool.shutdown(wait=True)
        report.seconds = time.monotonic() - t0
        self.progress.stop()
        return report

    def _total_size(self) -> int:
        return sum(self._exact.get(rp, estimate) for rp, estimate in self._estimates.items())

    def _size_told(self, key: str, size: int | None, already: int) -> None:
        """The source told a file's size (HTTP Content-Length): progress uses it from now on."""
        if size is not None and self._exact.get(key) != size:
            self._exact[key] = size
            self.progress.total_changed(self._total_size())
        self.progress.file_resized(key, size, already)

    def _fetch_one(self, entry: CatalogEntry) -> FileResult:
        key = entry.relative_path
        self.progress.file_started(key, entry.name, self._exact.get(key))
        result = FileResult(entry, ok=False)
        corrupt_before = False
        try:
            while True:
                try:
                    result.bytes_fetched += self._fetch_and_install(entry)
                    result.ok = True
                    break
                except CorruptDownload as exc:
                    # Fetch once more from scratch; damaged twice means the source is bad.
                    self._partial(entry).discard()
                    if corrupt_before:
                        raise TransferError(f"{exc} (twice; the source file may be damaged)", permanent=True) from None
                    corrupt_before = True
                    self.progress.message(f"{entry.name}: {exc}; fetching it again")
        except Cancelled:
            result.error = "interrupted"
        except UnsafeArchive as exc:
            self._partial(entry).discard()
            result.error = f"unsafe archive refused, nothing installed: {exc}"
        except WrongContent as exc:
            self._partial(entry).discard()
            result.error = f"refused, nothing installed: {exc}"
        except TransferError as exc:
            result.error = str(exc)
        except OSError as exc:
            result.error = describe_os_error(exc, self.mirage_data, entry)
        except Exception as exc:  # noqa: BLE001 - one file's surprise must not end the run
            result.error = f"unexpected error: {exc!r}"
        self.progress.file_finished(key, result.ok, result.error)
        return result

    # ------------------------------------------------------------------ one file

    def _partial(self, entry: CatalogEntry) -> PartialFile:
        return PartialFile(partial_path(self.mirage_data, entry.relative_path))

    def _fetch_and_install(self, entry: CatalogEntry) -> int:
        """Fetch and install one file; returns bytes read from the source."""
        if self.local is not None:
            return self._from_local(entry)
        return self._from_http(entry)

    def _from_http(self, entry: CatalogEntry) -> int:
        url = entry.url(self.base)
        partial = self._partial(entry)
        partial.load(url)
        key = entry.relative_path
        # Stops this file's connections: on Ctrl-C, or when installing it failed.
        stop = threading.Event()
        with self._file_stops_lock:
            self._file_stops.add(stop)
        if self.cancel.is_set():
            stop.set()
        download = HttpDownload(
            url,
            partial,
            self.options,
            stop,
            on_bytes=lambda n: self.progress.advance(key, n),
            on_info=lambda size, already: self._size_told(key, size, already),
        )

        def run() -> None:
            try:
                download.run()
            except BaseException as exc:  # noqa: BLE001 - the reader re-raises it
                partial.fail(exc)

        thread = threading.Thread(target=run, name=f"fetch {entry.name}", daemon=True)
        thread.start()
        try:
            while True:
                # A download that starts over (file changed, no Range support) restarts the
                # install from byte 0 as well.
                try:
                    hasher = hashlib.sha256()
                    reader = StreamReader(partial, self.cancel, hasher)
                    limit = lambda: allowance(partial.size or entry.expected_size or None)  # noqa: E731
                    staging = self._install(entry, reader, limit)
                    break
                except StreamRestarted:
                    continue
            thread.join()
            if partial.failed is not None:
                raise partial.failed
            self._check_source(entry, reader.position, partial.size, hasher.hexdigest())
            self._commit(entry, staging, url, reader.position, hasher.hexdigest(), partial.path)
            partial.discard()
            return download.bytes_received
        except BaseException:
            stop.set()
            if partial.failed is None:
                partial.fail(Cancelled())
            thread.join(timeout=10)
            partial.close()
            if not self.cancel.is_set() and isinstance(partial.failed, TransferError) and partial.failed.permanent:
                partial.discard()
            raise
        finally:
            with self._file_stops_lock:
                self._file_stops.discard(stop)
            partial.close()

    def _from_local(self, entry: CatalogEntry) -> int:
        source = self.local / entry.relative_path  # type: ignore[operator]
        if not source.is_file():
            raise TransferError(f"{source} is not in the mirror folder {self.local}", permanent=True)
        key = entry.relative_path
        size = source.stat().st_size
        self.progress.file_resized(key, size, 0)
        unpacked = source.with_name(source.name[: -len(".gz")]) if source.name.endswith(".fits.gz") else None
        if self.link and unpacked is not None and unpacked.is_file():
            # A decompressed copy beside the .gz on the share: link to it, nothing is copied. It
            # is checked like a fetched file and hashed; the .gz is not read, so no source
            # size or hash is recorded (nothing is recorded that was not computed).
            check_file(unpacked, check_for(entry))
            staging = StagedInstall(self.mirage_data, entry.relative_path)
            n = unpacked.stat().st_size
            staging.add_link(unpacked.resolve(), entry.install_path, n, sha256_of(unpacked))
            self.progress.advance(key, size)
            self._commit(entry, staging, str(unpacked), 0, "", None)
            return 0
        hasher = hashlib.sha256()
        reader = LocalReader(source, self.cancel, hasher, on_bytes=lambda n: self.progress.advance(key, n))
        try:
            staging = self._install(entry, reader, allowance(size))
        finally:
            reader.close()
        self._check_source(entry, reader.position, size, hasher.hexdigest())
        self._commit(entry, staging, str(source), reader.position, hasher.hexdigest(), source)
        return reader.position

    def _install(self, entry: CatalogEntry, reader, limit=None) -> StagedInstall:
        """Read the whole source through *reader* into a staging area (not yet in the layout),
        checking its content; decompressed output beyond *limit* bytes is refused."""
        staging = StagedInstall(self.mirage_data, entry.relative_path)
        try:
            if entry.is_archive:
                extract_archive(reader, staging, entry, limit)
            elif entry.relative_path.endswith(".gz"):
                staging.add_stream(GunzipReader(reader, limit), entry.install_path, check_for(entry, limit=limit))
            else:
                staging.add_stream(reader, entry.install_path, check_for(entry, limit=limit))
        except BaseException:
            staging.discard()
            raise
        return staging

    @staticmethod
    def _check_source(entry: CatalogEntry, n_bytes: int, size: int | None, digest: str) -> None:
        if size is not None and n_bytes != size:
            raise CorruptDownload(f"read {n_bytes} bytes of {size}")
        if entry.size is not None and n_bytes != entry.size:
            raise CorruptDownload(f"{n_bytes} bytes where the catalog says {entry.size}")
        if entry.sha256 and digest != entry.sha256:
            raise CorruptDownload(f"sha256 {digest[:12]}… where the catalog says {entry.sha256[:12]}…")

    def _commit(
        self,
        entry: CatalogEntry,
        staging: StagedInstall,
        source: str,
        size: int,
        digest: str,
        fetched_copy: Path | None,
    ) -> None:
        """Move the staged files into the layout, keep the archive if asked, record it."""
        if self.cancel.is_set():
            staging.discard()
            raise Cancelled()
        with self._commit_lock:
            try:
                self._check_replacement(entry, staging, digest)
            except BaseException:
                staging.discard()
                raise
            old = self.inventory.get(entry.relative_path)
            files = staging.commit()
            if old is not None:
                # Files an earlier version of this archive installed that this one no longer has
                # (unless another collection file installed the same file).
                new_paths = {f.path for f in files}
                shared = self._paths_of_others(entry)
                for f in old.files:
                    if f.path not in new_paths and f.path not in shared:
                        try:
                            (self.mirage_data / f.path).unlink()
                        except FileNotFoundError:
                            pass
            if self.keep_archives and fetched_copy is not None:
                kept = archives_dir(self.mirage_data) / entry.relative_path
                kept.parent.mkdir(parents=True, exist_ok=True)
                if self.local is None:
                    os.replace(fetched_copy, kept)
                else:
                    shutil.copyfile(fetched_copy, kept)
            self.inventory.add(
                Record(
                    relative_path=entry.relative_path,
                    source=source,
                    source_size=size,
                    source_sha256=digest,
                    files=files,
                    catalog_version=self.catalog_version,
                    # Only a link install has no fetched copy: its file stays the mirror's.
                    origin=LINKED if fetched_copy is None else DOWNLOADED,
                )
            )

    def _paths_of_others(self, entry: CatalogEntry) -> dict[str, tuple[str, str]]:
        """Installed path -> (sha256, collection file) for the files of every other record."""
        return {
            f.path: (f.sha256, rp)
            for rp, record in self.inventory.records.items()
            if rp != entry.relative_path
            for f in record.files
        }

    def _check_replacement(self, entry: CatalogEntry, staging: StagedInstall, digest: str) -> None:
        """Refuse staged files that may not go into the layout: a file differing from the same
        path installed by another collection file (identical copies are fine: the PSF tarballs
        share a folder), content that differs from a pinned catalog's, and bytes that differ
        from those an installed file was made from (so repair restores, never replaces)."""
        others = self._paths_of_others(entry)
        for _, f in staging.files:
            if f.path in others and others[f.path][0] != f.sha256:
                raise UnsafeArchive(
                    f"{f.path} would replace a different file installed from {others[f.path][1]}; "
                    "two collection files may not install different files at one path"
                )
        if entry.installed_sha256 is not None:
            got = installed_digest(entry, [f for _, f in staging.files])
            if got != entry.installed_sha256:
                raise WrongContent(
                    f"installed content sha256 {got[:12]}… where the pinned catalog says {entry.installed_sha256[:12]}…"
                )
        old = self.inventory.get(entry.relative_path)
        changed = old is not None and entry.sha256 is None and old.source_sha256 and digest != old.source_sha256
        # Only over files still in the layout: a user who deleted them has accepted new bytes.
        if changed and digest and any((self.mirage_data / f.path).exists() for f in old.files):
            raise WrongContent(
                f"the source now has different bytes (sha256 {digest[:12]}…) than those installed here "
                f"({old.source_sha256[:12]}…); the installed file is left as it is. To accept the new bytes, "
                "delete the installed file and download again (or pin them in a catalog given with --catalog)"
            )
