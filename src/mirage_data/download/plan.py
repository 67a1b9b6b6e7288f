"""What a run will do before it does it: files, sizes, what is installed, free disk space.

Sizes are exact where the source tells them (``stat`` of a mirror folder's files, the size an
interrupted HTTP download recorded from the server's Content-Length, or the catalog's exact
size) and the catalog's estimate otherwise. When estimates say the selection will not fit, an
HTTP source is asked (`ask_sizes`: a HEAD request per file, and the gzip trailer's last 4
bytes) before refusing. The space a file takes once decompressed is always an estimate: from
the gzip trailer (its size field counts modulo 4 GiB), else the transfer size.

Examples
--------
>>> from mirage_data.collection.catalog import load_catalog
>>> from mirage_data.collection.selection import Selection
>>> plan = make_plan("/tmp/reffiles", Selection(instrument="fgs", single_dark=True), load_catalog())
>>> len(plan.files), sum(f.entry.is_dark for f in plan.files)
(4, 2)
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from mirage_data.collection.catalog import Catalog, CatalogEntry, grouped
from mirage_data.collection.layout import mirage_data_path
from mirage_data.collection.selection import Selection
from mirage_data.install.inventory import INSTALLED, Inventory
from mirage_data.install.state import partial_path
from mirage_data.units import format_size

from .errors import NotEnoughSpace
from .fetcher import local_mirror_path
from .partial import recorded_bytes

PARTIAL = "partial"  # a resumable partial download is on disk


@dataclass(frozen=True)
class PlannedFile:
    """A selected file and its state on disk.

    Attributes
    ----------
    entry : CatalogEntry
    status : str
        ``installed``, ``missing``, ``modified`` (installed, since changed: fetched again) or
        ``partial`` (an interrupted download will resume).
    partial_bytes : int
        Bytes of a resumable partial download already on disk.
    source_size : int or None
        Exact size of the file to transfer, where the source or the catalog tells it.
    unpacked_estimate : int or None
        Estimated bytes once decompressed (from the gzip trailer), where the source can be read.
    """

    entry: CatalogEntry
    status: str
    partial_bytes: int = 0
    source_size: int | None = None
    unpacked_estimate: int | None = None

    @property
    def to_fetch(self) -> bool:
        return self.status != INSTALLED

    @property
    def exact(self) -> bool:
        """True when the transfer size is known exactly."""
        return self.source_size is not None or self.entry.size is not None

    @property
    def transfer_size(self) -> int:
        """Bytes to transfer: exact where known, else the catalog's estimate."""
        if self.source_size is not None:
            return self.source_size
        return self.entry.expected_size

    @property
    def space_size(self) -> int:
        """Estimated bytes the file takes installed."""
        return self.unpacked_estimate if self.unpacked_estimate is not None else self.transfer_size


@dataclass
class Plan:
    """The files of a selection and what fetching them needs.

    Attributes
    ----------
    download_path : Path
        The folder that holds ``mirage_data``.
    mirage_data : Path
        ``MIRAGE_DATA``.
    files : list of PlannedFile
    free_bytes : int or None
        Free space on the destination's filesystem (None if it cannot be read).
    base : str or None
        Where the files come from (asked for sizes when estimates do not fit).
    """

    download_path: Path
    mirage_data: Path
    files: list[PlannedFile]
    free_bytes: int | None
    base: str | None = None

    @property
    def entries_to_fetch(self) -> list[CatalogEntry]:
        return [f.entry for f in self.files if f.to_fetch]

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes still to transfer (approximate where neither source nor catalog tells the size)."""
        return sum(max(0, f.transfer_size - f.partial_bytes) for f in self.files if f.to_fetch)

    @property
    def total_bytes(self) -> int:
        return sum(f.transfer_size for f in self.files)

    @property
    def exact(self) -> bool:
        """True when every transfer size is known exactly."""
        return all(f.exact for f in self.files)

    @property
    def source_sizes(self) -> dict[str, int]:
        """Exact transfer sizes known before fetching, by relative path (for progress)."""
        return {f.entry.relative_path: f.transfer_size for f in self.files if f.exact}

    @property
    def space_needed(self) -> int:
        """Estimated bytes of free space the run needs: what it installs, plus room for the
        compressed copy of the largest file being fetched, less what partial downloads hold."""
        todo = [f for f in self.files if f.to_fetch]
        if not todo:
            return 0
        partial = sum(f.partial_bytes for f in todo)
        return sum(f.space_size for f in todo) + max(f.transfer_size for f in todo) - partial

    def check_space(self, options=None) -> None:
        """Raise `NotEnoughSpace` if the selection will not fit.

        If estimates say it will not, an HTTP(S) source is first asked the exact sizes
        (`ask_sizes`, with transfer *options*) and the plan updated with them."""
        if self.free_bytes is not None and self.space_needed > self.free_bytes and not self.exact:
            self.ask_source(options)
        if self.free_bytes is not None and self.space_needed > self.free_bytes:
            raise NotEnoughSpace(
                f"the selection needs about {format_size(self.space_needed)} once unpacked but {self.download_path} "
                f"has {format_size(self.free_bytes)} free; free some space, choose a smaller selection "
                "(single_dark, skip_darks, fewer instruments), or use force=True (--force) to try anyway"
            )

    def ask_source(self, options=None) -> None:
        """Replace estimates of the files to fetch by what an HTTP(S) source tells (`ask_sizes`)."""
        if not self.base or local_mirror_path_or_none(self.base) is not None:
            return
        todo = [f.entry for f in self.files if f.to_fetch and not f.exact]
        told = ask_sizes(self.base, todo, options)
        self.files = [
            replace(f, source_size=told[rp][0], unpacked_estimate=told[rp][1])
            if (rp := f.entry.relative_path) in told
            else f
            for f in self.files
        ]

    def summary_rows(self) -> list[tuple[str, str, int, int, int]]:
        """Per instrument and group: (instrument, group title, files, bytes, installed files)."""
        return [
            (
                inst,
                title,
                len(chosen),
                sum(f.transfer_size for f in chosen),
                sum(not f.to_fetch for f in chosen),
            )
            for inst, title, chosen in grouped(self.files, lambda f: f.entry)
        ]

    def describe(self, list_files: bool = True) -> str:
        """A human-readable plan: the files, sizes per group and in total, disk space."""
        lines = [f"Destination: {self.mirage_data}"]
        if list_files:
            lines.append("")
            for f in self.files:
                state = {INSTALLED: "installed", PARTIAL: f"partial {format_size(f.partial_bytes)}"}.get(
                    f.status, f.status
                )
                lines.append(f"  {format_size(f.transfer_size):>9}  {state:<10} {f.entry.relative_path}")
        lines.append("")
        lines.append(f"  {'instrument':<10} {'group':<22} {'files':>5} {'size':>9} {'installed':>9}")
        for inst, title, n, size, done in self.summary_rows():
            lines.append(f"  {inst:<10} {title:<22} {n:>5} {format_size(size):>9} {done:>9}")
        n_done = sum(not f.to_fetch for f in self.files)
        exact = self.exact
        approx = "" if exact else "about "
        lines.append(f"  {'total':<10} {'':<22} {len(self.files):>5} {format_size(self.total_bytes):>9} {n_done:>9}")
        lines.append("")
        lines.append(
            f"To fetch: {len(self.entries_to_fetch)} files, {approx}{format_size(self.bytes_to_fetch)}; "
            f"free space: {format_size(self.free_bytes) if self.free_bytes is not None else 'unknown'}"
            + (f", needed once unpacked: about {format_size(self.space_needed)}" if self.entries_to_fetch else "")
        )
        if not exact:
            lines.append("(sizes not told by the source are estimates from Mirage's published group sizes)")
        return "\n".join(lines)


def free_space(path: Path) -> int | None:
    """Free bytes on the filesystem that holds *path* (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def unwrap_isize(isize: int, compressed_size: int) -> int:
    """Estimated decompressed size from a gzip trailer's ISIZE (the size modulo 2**32, of the
    last member only): the smallest value with that remainder that is at least the compressed
    size less its headers.

    >>> unwrap_isize(100, 5 << 30) == (2 << 32) + 100
    True
    """
    floor = max(0, compressed_size - 64)
    wraps = max(0, -(-(floor - isize) // (1 << 32)))
    return isize + wraps * (1 << 32)


def gzip_unpacked_estimate(path: Path, size: int) -> int | None:
    """Estimated decompressed size of a gzip file on disk, from its trailer (`unwrap_isize`).
    None if the file cannot be read or is not gzip."""
    try:
        with open(path, "rb") as f:
            if size < 18 or f.read(2) != b"\x1f\x8b":
                return None
            f.seek(size - 4)
            isize = int.from_bytes(f.read(4), "little")
    except OSError:
        return None
    return unwrap_isize(isize, size)


def local_mirror_path_or_none(base: str) -> Path | None:
    try:
        return local_mirror_path(base)
    except ValueError:
        return None


def ask_sizes(base: str, entries, options=None, workers: int = 8) -> dict[str, tuple[int, int | None]]:
    """Ask an HTTP(S) source: ``relative path -> (size, unpacked estimate or None)``.

    One HEAD request per file for its Content-Length and, for gzip files on a server that
    serves byte ranges, a request for the last 4 bytes (the trailer's size field). Files the
    server does not answer for are left out (their estimates stay)."""
    import requests

    from .transfer import TransferOptions, _session, _verify

    options = options or TransferOptions()
    timeout = (options.connect_timeout, options.read_timeout)

    def one(entry: CatalogEntry) -> tuple[str, tuple[int, int | None] | None]:
        url = entry.url(base)
        try:
            session = _session(options)
            r = session.head(url, allow_redirects=True, timeout=timeout, **_verify(options))
            length = r.headers.get("Content-Length", "")
            if not r.ok or not length.isdigit():
                return entry.relative_path, None
            size = int(length)
            estimate = None
            if (
                entry.relative_path.endswith((".gz", ".tgz"))
                and size >= 18
                and "bytes" in r.headers.get("Accept-Ranges", "")
            ):
                tail = session.get(
                    url, headers={"Range": f"bytes={size - 4}-{size - 1}"}, timeout=timeout, **_verify(options)
                )
                if tail.status_code == 206 and len(tail.content) == 4:
                    estimate = unwrap_isize(int.from_bytes(tail.content, "little"), size)
            return entry.relative_path, (size, estimate)
        except requests.RequestException:
            return entry.relative_path, None

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(entries) or 1))) as pool:
        return {rp: told for rp, told in pool.map(one, entries) if told is not None}


def source_sizes(base: str | None, entries, mirage_data: Path | None = None) -> dict[str, tuple[int, int | None]]:
    """``relative path -> (transfer size, unpacked estimate or None)`` for what the source tells
    without new requests: ``stat`` (and the gzip trailer) of a local mirror's files, else the
    size an interrupted HTTP download recorded from the server's Content-Length."""
    sizes: dict[str, tuple[int, int | None]] = {}
    try:
        local = local_mirror_path(base) if base else None
    except ValueError:
        local = None
    for entry in entries:
        if local is not None:
            path = local / entry.relative_path
            try:
                size = path.stat().st_size
            except OSError:
                continue
            estimate = gzip_unpacked_estimate(path, size) if entry.relative_path.endswith((".gz", ".tgz")) else size
            sizes[entry.relative_path] = (size, estimate)
        elif base and mirage_data is not None:
            record = partial_path(mirage_data, entry.relative_path)
            try:
                recorded = json.loads(record.with_name(record.name + ".json").read_text())
                if recorded.get("url") == entry.url(base) and isinstance(recorded.get("size"), int):
                    sizes[entry.relative_path] = (recorded["size"], None)
            except (OSError, ValueError, AttributeError):
                pass
    return sizes


def make_plan(
    download_path: str | Path,
    selection: Selection,
    catalog: Catalog,
    inventory: Inventory | None = None,
    *,
    base: str | None = None,
) -> Plan:
    """Plan fetching *selection* into ``<download_path>/mirage_data``.

    Parameters
    ----------
    download_path : str or Path
        The folder that holds (or will hold) ``mirage_data``.
    selection : Selection
    catalog : Catalog
    inventory : Inventory, optional
        What is installed; read from the destination by default.
    base : str, optional
        Where the files will come from (URL or mirror folder): exact sizes are taken from it
        where it tells them without new requests (see `source_sizes`).
    """
    mirage_data = mirage_data_path(download_path)
    if inventory is None:
        inventory = Inventory.load(mirage_data)
    files = []
    chosen = selection.files(catalog)
    known = source_sizes(base, chosen, mirage_data)
    for entry in chosen:
        status = inventory.status(entry.relative_path)
        partial_bytes = 0
        if status != INSTALLED:
            partial_bytes = recorded_bytes(partial_path(mirage_data, entry.relative_path))
            if partial_bytes:
                status = PARTIAL
        size, estimate = known.get(entry.relative_path, (None, None))
        files.append(PlannedFile(entry, status, partial_bytes, size, estimate))
    return Plan(
        download_path=Path(download_path).expanduser().absolute(),
        mirage_data=mirage_data,
        files=files,
        free_bytes=free_space(Path(download_path)),
        base=base,
    )
