"""What is installed: a record of every file mirage-data put into ``MIRAGE_DATA``.

The inventory lives in ``MIRAGE_DATA/.mirage-data/inventory.json``: for each collection file
(by its relative path in the catalog) the source it came from, its size and sha256, and the
files it installed (path, size, sha256 of the installed bytes), when, from which catalog
version, and its provenance (`ORIGINS`: downloaded, adopted from a tree already there, linked
to a mirror's file, or made locally). It is rewritten atomically after each file, so an
interrupted run loses nothing that finished, and the previous version is kept beside it: a
damaged inventory falls back to that copy, and whatever neither knows is found again in the
layout (`install.adopt`). `status` compares the layout with it (quickly by size, or deeply by
re-hashing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mirage_data.io.atomic import atomic_write_text

from .state import state_dir

INVENTORY_NAME = "inventory.json"
BACKUP_NAME = "inventory.previous.json"  # the inventory before its last change
DAMAGED_NAME = "inventory.damaged"  # a damaged inventory, kept aside when it is rebuilt

#: Where an installed file came from. Repair restores a file from the same kind of source.
DOWNLOADED, ADOPTED, LINKED, MADE = "downloaded", "adopted", "linked", "made"
ORIGINS = (DOWNLOADED, ADOPTED, LINKED, MADE)

INSTALLED, MISSING, MODIFIED = "installed", "missing", "modified"


@dataclass(frozen=True)
class InstalledFile:
    """A file placed in the layout: path relative to MIRAGE_DATA, size (bytes), sha256."""

    path: str
    size: int
    sha256: str


@dataclass
class Record:
    """One collection file as installed.

    Attributes
    ----------
    relative_path : str
        The file's path in the catalog.
    source : str
        URL or path it was fetched from.
    source_size : int
        Bytes fetched.
    source_sha256 : str
        sha256 of the fetched bytes.
    files : list of InstalledFile
        What it installed, paths relative to MIRAGE_DATA.
    installed_at : str
        UTC time, ISO 8601.
    catalog_version : str
    origin : str
        One of `ORIGINS`: ``downloaded`` (fetched and installed), ``adopted`` (found in the
        layout, or unpacked from a leftover ``.gz``/tarball there), ``linked`` (a link to a
        mirror's file) or ``made`` (written locally, e.g. by ``linearize``).
    """

    relative_path: str
    source: str
    source_size: int
    source_sha256: str
    files: list[InstalledFile] = field(default_factory=list)
    installed_at: str = ""
    catalog_version: str = ""
    origin: str = DOWNLOADED

    @classmethod
    def from_json(cls, data: dict) -> Record:
        """A record from its JSON form; unknown keys (a newer version's) are ignored."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["files"] = [InstalledFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data.get("files", [])]
        record = cls(**data)
        if not isinstance(record.relative_path, str) or record.origin not in ORIGINS:
            raise ValueError(f"bad record {data!r}")
        return record


class Inventory:
    """The record of installed files below one ``MIRAGE_DATA`` folder.

    Parameters
    ----------
    mirage_data : Path
        The ``MIRAGE_DATA`` folder.

    Examples
    --------
    >>> from mirage_data import download_reffiles
    >>> tree = download_reffiles("reffiles", instrument="fgs", skip_darks=True, mirror=server_url,
    ...                          catalog=sample_catalog, quiet=True).mirage_data
    >>> inv = Inventory.load(tree)
    >>> len(inv.records), inv.status("fgs/cosmic_ray_library/mirage_fgs_cr_library.tar.gz")
    (2, 'installed')
    """

    def __init__(self, mirage_data: Path, records: dict[str, Record] | None = None) -> None:
        self.mirage_data = Path(mirage_data)
        self.records: dict[str, Record] = records or {}
        #: Why the inventory could not be read as it was (None when it was fine or absent);
        #: the records then come from the previous copy, if that one was readable.
        self.damage: str | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return state_dir(self.mirage_data) / INVENTORY_NAME

    @property
    def backup_path(self) -> Path:
        return state_dir(self.mirage_data) / BACKUP_NAME

    @classmethod
    def load(cls, mirage_data: Path) -> Inventory:
        """Read the inventory of *mirage_data* (empty when there is none yet).

        Never raises for a damaged file: a truncated, empty or invalid inventory is replaced by
        the previous copy when that one reads, else by an empty inventory, and `damage` says
        what was wrong. Files the records miss are then found in the layout by
        `install.adopt.adopt_tree`, which checks and records them without fetching them again.
        """
        inv = cls(mirage_data)
        try:
            inv.records = _read_records(inv.path)
            return inv
        except FileNotFoundError:
            if not inv.backup_path.exists():
                return inv
            inv.damage = f"{inv.path} is missing"
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            inv.damage = f"{inv.path} cannot be read ({_short(exc)})"
        try:
            inv.records = _read_records(inv.backup_path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            inv.records = {}
        return inv

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": 1,
            "files": {k: asdict(v) for k, v in sorted(self.records.items())},
        }
        if self.damage is None and self.path.exists():
            # Keep the last good version: if this one is ever damaged, little is lost.
            with contextlib.suppress(OSError):
                os.replace(self.path, self.backup_path)
        elif self.damage is not None and (self.path.exists() or self.path.is_symlink()):
            # Keep the damaged one aside for inspection (whatever it is: even a folder).
            aside = self.path.with_name(DAMAGED_NAME)
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside)
            elif aside.exists() or aside.is_symlink():
                aside.unlink()
            os.replace(self.path, aside)
        atomic_write_text(self.path, json.dumps(data, indent=1))
        self.damage = None

    def add(self, record: Record) -> None:
        """Record an installed file and save at once (thread-safe)."""
        if not record.installed_at:
            record.installed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            self.records[record.relative_path] = record
            self._save()

    def remove(self, relative_path: str) -> None:
        with self._lock:
            if self.records.pop(relative_path, None) is not None:
                self._save()

    def get(self, relative_path: str) -> Record | None:
        return self.records.get(relative_path)

    # ---------------------------------------------------------------- checks

    def file_problem(self, f: InstalledFile, deep: bool = False) -> str | None:
        """Why an installed file is not as recorded (None if it is)."""
        path = self.mirage_data / f.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        if size != f.size:
            return f"size {size} instead of {f.size}"
        if deep and sha256_of(path) != f.sha256:
            return "content differs (sha256)"
        return None

    def status(self, relative_path: str, deep: bool = False) -> str:
        """``installed``, ``missing`` (never installed) or ``modified`` (installed, since
        changed or deleted)."""
        record = self.records.get(relative_path)
        if record is None:
            return MISSING
        if any(self.file_problem(f, deep) for f in record.files):
            return MODIFIED
        return INSTALLED

    def verify(
        self,
        relative_paths: Iterable[str],
        *,
        workers: int = 4,
        on_bytes: Callable[[int], None] | None = None,
    ) -> dict[str, list[tuple[str, str]]]:
        """Re-hash the installed files of the given collection files, in parallel.

        Returns, for each collection file with problems, ``[(installed path, problem), ...]``.
        """
        jobs = [(rp, f) for rp in relative_paths if (r := self.records.get(rp)) is not None for f in r.files]

        def check(job: tuple[str, InstalledFile]) -> tuple[str, str, str | None]:
            rp, f = job
            problem = self.file_problem(f, deep=False)
            if problem is None:
                digest = sha256_of(self.mirage_data / f.path, on_bytes)
                problem = None if digest == f.sha256 else "content differs (sha256)"
            return rp, f.path, problem

        problems: dict[str, list[tuple[str, str]]] = {}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for rp, path, problem in pool.map(check, jobs):
                if problem:
                    problems.setdefault(rp, []).append((path, problem))
        return problems


def _read_records(path: Path) -> dict[str, Record]:
    data = json.loads(path.read_text("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise ValueError("not an inventory")
    return {k: Record.from_json(v) for k, v in data.get("files", {}).items()}


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:120] + "..."


def sha256_of(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (hashlib releases the GIL: threads scale)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return h.hexdigest()
