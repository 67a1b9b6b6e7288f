"""Where mirage-data keeps its own state, below ``MIRAGE_DATA/.mirage-data``.

Everything lives on the same filesystem as the layout, so finished files are moved into place
with atomic renames: the inventory, the run lock, partial downloads (resumable) and temporary
files. Mirage's globs never look inside this hidden folder.

Runs that die without cleaning up (``kill -9``, out of memory, reboot) leave staging folders and
temporary files whose names carry host and process id; `remove_stale_leftovers` finds those of
dead processes of this host and removes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mirage_data.io.atomic import TEMPORARY_SUFFIX, is_stale_temporary, parse_temporary_name, temporary_path

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


def _stale_staging(name: str) -> bool:
    """A staging folder or temporary file of a writer on this host that no longer runs.

    Names made by `io.atomic.temporary_path` carry host and pid; staging folders of earlier
    versions (``<label>.<pid>.staging``) carry only the pid and were always local.
    """
    if is_stale_temporary(name):
        return True
    parts = name.split(".")
    if len(parts) >= 3 and parts[-1] == "staging" and parts[-2].isdigit():
        return is_stale_temporary(f".x.{_this_host()}.{parts[-2]}.0{TEMPORARY_SUFFIX}")
    return False


def _this_host() -> str:
    parsed = parse_temporary_name(temporary_path("x").name)
    return parsed[0] if parsed else ""


def _tree_size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_blocks * 512
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def stale_leftovers(mirage_data: Path) -> list[tuple[Path, int]]:
    """Staging folders and temporary files left by runs that died (``kill -9``, out of memory,
    reboot), with their sizes in bytes, below *mirage_data* (state folder and layout).

    A leftover of a process that still runs, or of another host, is never listed.
    """
    mirage_data = Path(mirage_data)
    found: list[tuple[Path, int]] = []
    if not mirage_data.is_dir():
        return found
    for folder, dirs, names in os.walk(mirage_data):
        for name in [*dirs, *names]:
            if _stale_staging(name):
                path = Path(folder) / name
                with contextlib.suppress(OSError):
                    found.append((path, _tree_size(path)))
        dirs[:] = [d for d in dirs if not _stale_staging(d)]
    return found


def remove_stale_leftovers(mirage_data: Path) -> int:
    """Remove what `stale_leftovers` lists; return the bytes given back. Call it under the run
    lock, so that no run of this tree is half-way through moving a staged file into place."""
    freed = 0
    for path, size in stale_leftovers(mirage_data):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            freed += size
        except FileNotFoundError:
            pass
    return freed
