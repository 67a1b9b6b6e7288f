"""Looking after an installed tree: status, verify, repair.

Examples
--------
An install (from the sample collection the test suite serves at ``server_url``), its status,
a damaged dark found by `verify_install` and restored by ``repair_install``:

>>> from mirage_data import download_reffiles, installed_status, repair_install, verify_install
>>> tree = download_reffiles("reffiles", instrument="fgs", single_dark=True, mirror=server_url,
...                          catalog=sample_catalog, quiet=True).mirage_data
>>> [(group.title, group.installed) for group in installed_status(tree) if group.instrument == "fgs"]
[('raw darks', 0), ('linearized darks', 2), ('gridded PSF library', 1), ('cosmic-ray library', 1)]
>>> verify_install(tree)
{}
>>> dark = next((tree / "fgs" / "darks" / "linearized").rglob("*.fits"))
>>> _ = dark.write_bytes(b"damaged")
>>> [problem for problems in verify_install(tree).values() for _, problem in problems]
['size 7 instead of 100684800']
>>> repaired, report = repair_install(tree, quiet=True)
>>> len(repaired), verify_install(tree)
(1, {})
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mirage_data.collection.catalog import INSTRUMENTS, Catalog, CatalogError, grouped, load_catalog
from mirage_data.io.atomic import atomic_write_text
from mirage_data.progress import QuietProgress

from .content import installed_digest
from .inventory import ADOPTED, INSTALLED, MODIFIED, Inventory
from .state import state_dir

SOURCE_RECORD = "source.json"
CATALOG_COPY = "catalog.tsv"
VERIFY_RECORD = "verified.json"


class NotAnInstall(FileNotFoundError):
    """A folder that holds no Mirage reference files installed by mirage-data."""


def find_mirage_data(path: str | os.PathLike | None = None) -> Path:
    """The ``MIRAGE_DATA`` folder meant by *path*: the folder itself, or a download path that
    holds ``mirage_data``. Default: ``$MIRAGE_DATA``, else the current folder."""
    if path is None:
        path = os.environ.get("MIRAGE_DATA") or "."
    p = Path(path).expanduser().absolute()
    if not p.is_dir():
        raise NotAnInstall(f"{p} is not a folder; give the MIRAGE_DATA folder or the folder that holds it")
    for candidate in (p, p / "mirage_data"):
        if state_dir(candidate).is_dir():
            return candidate
    # A tree without state (made by Mirage's own downloader, copied, or its state deleted).
    for candidate in (p, p / "mirage_data"):
        if any((candidate / inst).is_dir() for inst in INSTRUMENTS):
            return candidate
    raise NotAnInstall(
        f"{p} holds no Mirage reference files (no .mirage-data, nircam, niriss or fgs folder in it or in "
        f"{p / 'mirage_data'}); give the MIRAGE_DATA folder or the folder that holds it"
    )


def remember_source(mirage_data: Path, base: str, catalog: Catalog) -> None:
    """Keep the catalog and source of a download, for later status and repair."""
    folder = state_dir(mirage_data)
    folder.mkdir(parents=True, exist_ok=True)
    catalog.write(folder / CATALOG_COPY)
    atomic_write_text(folder / SOURCE_RECORD, json.dumps({"base": base}))


def remembered_catalog(mirage_data: Path) -> Catalog:
    """The catalog of the last download into *mirage_data* (else the packaged one)."""
    path = state_dir(mirage_data) / CATALOG_COPY
    if path.exists():
        try:
            return load_catalog(path)
        except CatalogError:
            pass
    return load_catalog()


def remembered_base(mirage_data: Path) -> str | None:
    try:
        return json.loads((state_dir(mirage_data) / SOURCE_RECORD).read_text())["base"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class GroupStatus:
    """One instrument's group: files in the catalog, installed (of which adopted: found in the
    tree and checked, not downloaded), modified, untracked (in the tree, not yet recorded:
    `install.adopt` checks and records them) and missing."""

    instrument: str
    title: str
    total: int
    installed: int
    modified: list[str]
    adopted: int = 0
    untracked: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.total - self.installed - len(self.modified) - len(self.untracked)


def installed_status(
    mirage_data: Path, catalog: Catalog | None = None, inventory: Inventory | None = None
) -> list[GroupStatus]:
    """Per instrument and group: how many of the collection's files are installed, adopted,
    modified (installed, since changed or deleted), untracked or missing. A quick check (sizes,
    not hashes) that writes nothing."""
    catalog = catalog or remembered_catalog(mirage_data)
    inventory = inventory or Inventory.load(mirage_data)
    from .adopt import untracked_entries  # here: adopting pulls in the gzip stack, status alone does not

    untracked = {e.relative_path for e in untracked_entries(mirage_data, inventory, catalog)}
    rows = []
    for inst, title, entries in grouped(catalog):
        states = {e.relative_path: inventory.status(e.relative_path) for e in entries}
        installed = [rp for rp, s in states.items() if s == INSTALLED]
        rows.append(
            GroupStatus(
                inst,
                title,
                len(entries),
                len(installed),
                [rp for rp, s in states.items() if s == MODIFIED],
                sum(inventory.records[rp].origin == ADOPTED for rp in installed),
                [e.relative_path for e in entries if e.relative_path in untracked],
            )
        )
    return rows


def record_verification(mirage_data: Path, problems: dict[str, list[tuple[str, str]]]) -> Path | None:
    """Keep the result of a verify in the state folder. Returns None when it was recorded, else
    the folder where it could not be (a read-only tree: nothing is created there)."""
    folder = state_dir(mirage_data)
    if not (folder.is_dir() and os.access(folder, os.W_OK)):
        return folder
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        atomic_write_text(folder / VERIFY_RECORD, json.dumps({"verified_at": when, "problems": problems}, indent=1))
    except OSError:
        return folder
    return None


def verify_install(
    mirage_data: Path, *, workers: int = 4, progress: QuietProgress | None = None
) -> dict[str, list[tuple[str, str]]]:
    """Re-hash every installed file against the inventory.

    Returns
    -------
    dict
        For each collection file with a problem: ``[(installed path, problem), ...]``.
    """
    mirage_data = Path(mirage_data)
    if not mirage_data.is_dir():
        raise NotAnInstall(f"{mirage_data} does not exist; give the MIRAGE_DATA folder to verify")
    inventory = Inventory.load(mirage_data)
    progress = progress or QuietProgress()
    total = sum(f.size for r in inventory.records.values() for f in r.files)
    progress.start(len(inventory.records), total)
    progress.file_started("verify", "verifying", total)
    try:
        return inventory.verify(
            list(inventory.records), workers=workers, on_bytes=lambda n: progress.advance("verify", n)
        )
    finally:
        progress.file_finished("verify", True)
        progress.stop()


def pin_catalog(
    mirage_data: Path,
    catalog: Catalog | None = None,
    *,
    workers: int = 4,
    progress: QuietProgress | None = None,
) -> tuple[Catalog, int]:
    """A catalog pinned to a verified install: exact sizes and sha256 of what was installed.

    Every installed file is re-hashed first; a tree that does not verify is refused. For
    each installed collection file the catalog gets what its route could check: the fetched
    file's size and sha256 as recorded while it was transferred (files read from the source),
    and the digest of what it installed (`content.installed_digest`; all that a linked or
    adopted file has). Locally made files (e.g. linearized darks) are not the collection's
    bytes and are left unpinned. Other installs then use the result with ``--catalog`` and
    refuse anything that differs.

    Parameters
    ----------
    mirage_data : Path
        A ``MIRAGE_DATA`` folder installed by mirage-data.
    catalog : Catalog, optional
        The catalog to pin (default: the one of the last download into *mirage_data*).

    Returns
    -------
    (Catalog, int)
        The pinned catalog (all entries; the installed ones pinned) and how many were pinned.

    Raises
    ------
    ValueError
        If an installed file is damaged or missing.
    """
    problems = verify_install(mirage_data, workers=workers, progress=progress)
    if problems:
        rp, issues = sorted(problems.items())[0]
        raise ValueError(
            f"{len(problems)} installed collection files do not verify (first: {issues[0][1]}: {issues[0][0]}); "
            "run `mirage-data repair` first: only a verified install can be pinned"
        )
    catalog = catalog or remembered_catalog(mirage_data)
    inventory = Inventory.load(mirage_data)
    pins: dict[str, tuple[int | None, str | None, str | None]] = {}
    for rp, record in inventory.records.items():
        if rp not in catalog or getattr(record, "origin", "downloaded") == "made" or not record.files:
            continue
        read_from_source = bool(record.source_sha256) and record.source_size > 0
        pins[rp] = (
            record.source_size if read_from_source else None,
            record.source_sha256 if read_from_source else None,
            installed_digest(catalog.get(rp), record.files),
        )
    return catalog.pinned(pins), len(pins)


def files_to_repair(mirage_data: Path, deep: bool = True, **verify_options) -> list[str]:
    """Relative paths (catalog) of installed files that are damaged or missing."""
    if deep:
        return sorted(verify_install(mirage_data, **verify_options))
    inventory = Inventory.load(mirage_data)
    return sorted(rp for rp in inventory.records if inventory.status(rp) != INSTALLED)


__all__ = [
    "GroupStatus",
    "NotAnInstall",
    "find_mirage_data",
    "installed_status",
    "record_verification",
    "verify_install",
    "files_to_repair",
    "pin_catalog",
    "remember_source",
    "remembered_base",
    "remembered_catalog",
]
