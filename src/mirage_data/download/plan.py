"""What a run will do before it does it: files, sizes, what is installed, free disk space.

Examples
--------
>>> from mirage_data.collection.catalog import load_catalog
>>> from mirage_data.collection.selection import Selection
>>> plan = make_plan("/tmp/reffiles", Selection(instrument="fgs", single_dark=True), load_catalog())
>>> len(plan.files), sum(f.entry.is_dark for f in plan.files)
(4, 2)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mirage_data.collection.catalog import Catalog, CatalogEntry, grouped
from mirage_data.collection.layout import mirage_data_path
from mirage_data.collection.selection import Selection
from mirage_data.install.inventory import INSTALLED, Inventory
from mirage_data.install.state import partial_path
from mirage_data.units import format_size

from .errors import NotEnoughSpace
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
    """

    entry: CatalogEntry
    status: str
    partial_bytes: int = 0

    @property
    def to_fetch(self) -> bool:
        return self.status != INSTALLED


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
    """

    download_path: Path
    mirage_data: Path
    files: list[PlannedFile]
    free_bytes: int | None

    @property
    def entries_to_fetch(self) -> list[CatalogEntry]:
        return [f.entry for f in self.files if f.to_fetch]

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes still to transfer (approximate where the catalog has no exact size)."""
        return sum(max(0, f.entry.expected_size - f.partial_bytes) for f in self.files if f.to_fetch)

    @property
    def total_bytes(self) -> int:
        return sum(f.entry.expected_size for f in self.files)

    @property
    def space_needed(self) -> int:
        """Estimated bytes of free space the run needs: what it installs, plus room for the
        compressed copies of the files being fetched at once (the largest)."""
        todo = [f.entry.expected_size for f in self.files if f.to_fetch]
        if not todo:
            return 0
        partial = sum(f.partial_bytes for f in self.files if f.to_fetch)
        return sum(todo) + max(todo) - partial

    def check_space(self) -> None:
        """Raise `NotEnoughSpace` if the selection will not fit."""
        if self.free_bytes is not None and self.space_needed > self.free_bytes:
            raise NotEnoughSpace(
                f"the selection needs about {format_size(self.space_needed)} but {self.download_path} "
                f"has {format_size(self.free_bytes)} free; free some space, choose a smaller selection "
                "(single_dark, skip_darks, fewer instruments), or use force=True (--force) to try anyway"
            )

    def summary_rows(self) -> list[tuple[str, str, int, int, int]]:
        """Per instrument and group: (instrument, group title, files, bytes, installed files)."""
        return [
            (
                inst,
                title,
                len(chosen),
                sum(f.entry.expected_size for f in chosen),
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
                lines.append(f"  {format_size(f.entry.expected_size):>9}  {state:<10} {f.entry.relative_path}")
        lines.append("")
        lines.append(f"  {'instrument':<10} {'group':<22} {'files':>5} {'size':>9} {'installed':>9}")
        for inst, title, n, size, done in self.summary_rows():
            lines.append(f"  {inst:<10} {title:<22} {n:>5} {format_size(size):>9} {done:>9}")
        n_done = sum(not f.to_fetch for f in self.files)
        exact = all(f.entry.size is not None for f in self.files)
        approx = "" if exact else "about "
        lines.append(f"  {'total':<10} {'':<22} {len(self.files):>5} {format_size(self.total_bytes):>9} {n_done:>9}")
        lines.append("")
        lines.append(
            f"To fetch: {len(self.entries_to_fetch)} files, {approx}{format_size(self.bytes_to_fetch)}; "
            f"free space: {format_size(self.free_bytes) if self.free_bytes is not None else 'unknown'}"
            + (f", needed: {approx}{format_size(self.space_needed)}" if self.entries_to_fetch else "")
        )
        if not exact:
            lines.append("(sizes are estimates from Mirage's published group sizes)")
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


def make_plan(
    download_path: str | Path,
    selection: Selection,
    catalog: Catalog,
    inventory: Inventory | None = None,
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
    """
    mirage_data = mirage_data_path(download_path)
    if inventory is None:
        inventory = Inventory.load(mirage_data)
    files = []
    for entry in selection.files(catalog):
        status = inventory.status(entry.relative_path)
        partial_bytes = 0
        if status != INSTALLED:
            partial_bytes = recorded_bytes(partial_path(mirage_data, entry.relative_path))
            if partial_bytes:
                status = PARTIAL
        files.append(PlannedFile(entry, status, partial_bytes))
    return Plan(
        download_path=Path(download_path).expanduser().absolute(),
        mirage_data=mirage_data,
        files=files,
        free_bytes=free_space(Path(download_path)),
    )
