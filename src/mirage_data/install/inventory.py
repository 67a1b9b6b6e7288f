"""What is installed: a record of every file mirage-data put into ``MIRAGE_DATA``.

The inventory lives in ``MIRAGE_DATA/.mirage-data/inventory.json``: for each collection file
(by its relative path in the catalog) the source it came from, its size and sha256, and the
files it installed (path, size, sha256 of the installed bytes), when, and from which catalog
version. It is rewritten atomically after each file, so an interrupted run loses nothing that
finished. `check` compares the layout with it (quickly by size, or deeply by re-hashing).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mirage_data.io.atomic import atomic_write_text

from .state import state_dir

INVENTORY_NAME = "inventory.json"

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
    """

    relative_path: str
    source: str
    source_size: int
    source_sha256: str
    files: list[InstalledFile] = field(default_factory=list)
    installed_at: str = ""
    catalog_version: str = ""

    @classmethod
    def from_json(cls, data: dict) -> Record:
        data = dict(data)
        data["files"] = [InstalledFile(**f) for f in data.get("files", [])]
        return cls(**data)


class Inventory:
    """The record of installed files below one ``MIRAGE_DATA`` folder.

    Parameters
    ----------
    mirage_data : Path
        The ``MIRAGE_DATA`` folder.

    Examples
    --------
    >>> inv = Inventory.load(Path("mirage_data"))  # doctest: +SKIP
    >>> inv.status(entry)                           # doctest: +SKIP
    'installed'
    """

    def __init__(self, mirage_data: Path, records: dict[str, Record] | None = None) -> None:
        self.mirage_data = Path(mirage_data)
        self.records: dict[str, Record] = records or {}
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return state_dir(self.mirage_data) / INVENTORY_NAME

    @classmethod
    def load(cls, mirage_data: Path) -> Inventory:
        """Read the inventory of *mirage_data* (empty when there is none yet)."""
        inv = cls(mirage_data)
        try:
            data = json.loads(inv.path.read_text("utf-8"))
        except FileNotFoundError:
            return inv
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"the inventory {inv.path} cannot be read ({exc}); move it aside and run "
                "`mirage-data download` again to rebuild it"
            ) from None
        inv.records = {k: Record.from_json(v) for k, v in data.get("files", {}).items()}
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
        atomic_write_text(self.path, json.dumps(data, indent=1))

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


def sha256_of(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (hashlib releases the GIL: threads scale)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return h.hexdigest()
