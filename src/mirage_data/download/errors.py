"""The errors a download reports to its caller (light: the CLI imports them up front)."""

from __future__ import annotations


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
