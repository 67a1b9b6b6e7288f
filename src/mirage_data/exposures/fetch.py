"""Fetching an explicit set of collection files through the download engine (same verification,
resume, mirror handling, inventory and lock as ``download_reffiles``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mirage_data.collection.catalog import Catalog, CatalogEntry
from mirage_data.download.api import resolve_base, run_lock
from mirage_data.download.errors import DownloadFolderError
from mirage_data.download.fetcher import Fetcher, FetchReport
from mirage_data.download.transfer import TransferOptions
from mirage_data.install.inventory import Inventory
from mirage_data.install.upkeep import remember_source
from mirage_data.progress import QuietProgress


def writable(folder: Path) -> bool:
    """Whether files can be created in *folder* (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def fetch_entries(
    mirage_data: Path,
    entries: list[CatalogEntry],
    catalog: Catalog,
    *,
    mirror: str | os.PathLike | None = None,
    options: TransferOptions | None = None,
    jobs: int = 4,
    connections: int = 4,
    progress: QuietProgress | None = None,
    wait: bool = True,
    link: bool = False,
) -> FetchReport:
    """Fetch and install *entries* into *mirage_data* (a writable ``MIRAGE_DATA``-like folder)."""
    mirage_data = Path(mirage_data)
    if not writable(mirage_data):
        raise DownloadFolderError(f"cannot write to {mirage_data}; give a folder you can write to")
    base = resolve_base(mirror, catalog)
    options = replace(options or TransferOptions(), jobs=jobs, connections=connections)
    progress = progress or QuietProgress()
    with run_lock(mirage_data, wait=wait, progress=progress):
        inventory = Inventory.load(mirage_data)
        remember_source(mirage_data, base, catalog)
        fetcher = Fetcher(mirage_data, base, inventory, options, progress, link=link, catalog_version=catalog.version)
        return fetcher.run(list(entries))
