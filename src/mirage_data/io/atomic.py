"""Write a file completely or not at all: write to a temporary name beside it, then rename.

Every file mirage-data creates goes through `atomic_path` (or its small wrappers), so a crash,
``kill -9`` or a full disk leaves either the old file or the new one, never half of one. The
temporary names carry the host and the process id (`temporary_path`), so that a later run,
possibly on another machine sharing the filesystem, can tell a dead writer's leftovers from a
live one's (`is_stale_temporary`).

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "a.txt", "hello")
>>> (folder / "a.txt").read_text()
'hello'
>>> with atomic_path(folder / "b.bin") as tmp:
...     _ = tmp.write_bytes(b"data")
>>> sorted(p.name for p in folder.iterdir())
['a.txt', 'b.bin']
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "TEMPORARY_SUFFIX",
    "temporary_path",
    "parse_temporary_name",
    "is_stale_temporary",
    "remove_stale_temporaries",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_path",
]

#: Suffix of every temporary file mirage-data writes.
TEMPORARY_SUFFIX = ".mdtmp"

_HOST = socket.gethostname().replace(".", "_") or "host"


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside *path*: ``.<name>.<host>.<pid>.<random><TEMPORARY_SUFFIX>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")


def parse_temporary_name(name: str) -> tuple[str, int] | None:
    """The (host, pid) of a name made by `temporary_path`, or None for any other name."""
    if not name.startswith(".") or not name.endswith(TEMPORARY_SUFFIX):
        return None
    parts = name[: -len(TEMPORARY_SUFFIX)].split(".")
    if len(parts) < 5 or not parts[-2].isdigit():
        return None
    return parts[-3], int(parts[-2])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_stale_temporary(name: str, host: str | None = None) -> bool:
    """True if *name* is a temporary file of a writer on this host that no longer runs.

    Names from other hosts are never called stale here: only that host can tell.
    """
    parsed = parse_temporary_name(name)
    if parsed is None:
        return False
    owner_host, pid = parsed
    return owner_host == (host or _HOST) and (pid != os.getpid()) and not _process_alive(pid)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that dead writers on this host left directly in *folder*.

    Returns the paths removed. Files of live writers, of other hosts and any other files are
    left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if is_stale_temporary(entry.name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside *path*; rename it onto *path* if the block succeeds.

    Parameters
    ----------
    path : path-like
        The final file.
    durable : bool
        fsync the file and its folder before and after the rename (survives power loss, not
        only crashes).
    make_parents : bool
        Create the folder first.

    On any exception (KeyboardInterrupt included) the temporary file is removed and *path* is
    left as it was.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> None:
    """Write *data* to *path* atomically (see `atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    """Write *text* (UTF-8) to *path* atomically (see `atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)
