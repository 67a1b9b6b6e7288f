"""The errors a download reports to its caller (light: the CLI imports them up front)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class DownloadFolderError(OSError):
    """The download folder cannot be created or written."""


class LockedError(RuntimeError):
    """Another mirage-data run holds the lock on this ``MIRAGE_DATA``."""


class NotEnoughSpace(OSError):
    """The selection will not fit on the destination's filesystem."""


class DownloadFailed(RuntimeError):
    """Some files could not be fetched; the others were installed. ``result`` has details."""

    def __init__(self, message: str, result) -> None:
        super().__init__(message)
        self.result = result


def describe_os_error(exc: OSError, mirage_data: Path, entry) -> str:
    """One line for a file that could not be written or read: the real path (never a staging or
    temporary name), and what to do. A full disk says how much the file needs and where."""
    from mirage_data.install.state import STATE_DIR
    from mirage_data.units import format_size

    target = Path(mirage_data) / entry.install_path
    path = exc.filename2 if isinstance(exc, OSError) and exc.filename2 else exc.filename
    if path is None or STATE_DIR in Path(str(path)).parts or str(path).endswith(".mdtmp"):
        path = target  # a staging name stands for the file it becomes
    if exc.errno == errno.ENOSPC:
        where = Path(mirage_data)
        if exc.filename:  # the filesystem that is full, if not the layout's own
            folder = Path(str(exc.filename)).parent
            try:
                if os.stat(folder).st_dev != os.stat(where).st_dev:
                    where = folder
            except OSError:
                pass
        try:
            free = format_size(shutil.disk_usage(where).free)
        except OSError:
            free = "unknown"
        return (
            f"disk full: no space left in {where} ({free} free) for {target}, which needs about "
            f"{format_size(entry.expected_size)} compressed and more unpacked; free some space or download "
            "to another folder"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"permission denied: {path} ({exc.strerror}); make it readable and writable for you "
            "(chmod/chown, or ask its owner), or download to a folder of your own"
        )
    return f"{exc.strerror or exc}: {path}"
