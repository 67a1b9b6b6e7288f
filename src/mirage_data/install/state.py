"""Where mirage-data keeps its own state, below ``MIRAGE_DATA/.mirage-data``.

Everything lives on the same filesystem as the layout, so finished files are moved into place
with atomic renames: the inventory, the run lock, partial downloads (resumable) and temporary
files. Mirage's globs never look inside this hidden folder.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".mirage-data"


def state_dir(mirage_data: Path) -> Path:
    return Path(mirage_data) / STATE_DIR


def tmp_dir(mirage_data: Path) -> Path:
    """Folder for temporary files (created on demand)."""
    path = state_dir(mirage_data) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def partial_path(mirage_data: Path, relative_path: str) -> Path:
    """The partial (resumable) download of a collection file."""
    return state_dir(mirage_data) / "partial" / (relative_path + ".part")


def lock_path(mirage_data: Path) -> Path:
    return state_dir(mirage_data) / "lock"


def archives_dir(mirage_data: Path) -> Path:
    """Where ``keep_archives`` keeps fetched files, laid out like the collection."""
    return state_dir(mirage_data) / "archives"
