"""Partial downloads on disk: the data file and its record of the byte ranges done.

A partial file lives below ``MIRAGE_DATA/.mirage-data/partial``; beside it, a small JSON record
(rewritten atomically every ``_RECORD_INTERVAL`` seconds) keeps the ranges written and the
server's validators (ETag, Last-Modified, length), so that the next run resumes with ``Range``
and ``If-Range``. Only this module reads or writes that record.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from mirage_data.io.atomic import atomic_write_text

_RECORD_INTERVAL = 0.25  # seconds between updates of a partial file's range record


class Cancelled(Exception):
    """The run was interrupted (Ctrl-C); partial files are left resumable."""


class StreamRestarted(Exception):
    """The download started again from byte 0; whoever reads it must start over too."""


def merge_ranges(ranges: list[list[int]]) -> list[list[int]]:
    """Merge half-open ``[start, end)`` ranges.

    >>> merge_ranges([[5, 8], [0, 2], [2, 4], [7, 9]])
    [[0, 4], [5, 9]]
    """
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def missing_ranges(done: list[list[int]], size: int) -> list[list[int]]:
    """The parts of ``[0, size)`` not covered by *done*.

    >>> missing_ranges([[0, 4], [5, 9]], 12)
    [[4, 5], [9, 12]]
    """
    out, pos = [], 0
    for start, end in merge_ranges(done):
        if start > pos:
            out.append([pos, start])
        pos = max(pos, end)
    if pos < size:
        out.append([pos, size])
    return out


def split_ranges(ranges: list[list[int]], parts: int, min_size: int) -> list[list[int]]:
    """Split the largest ranges until there are *parts* of them, none smaller than *min_size*.

    >>> split_ranges([[0, 100]], 4, 10)
    [[0, 25], [25, 50], [50, 75], [75, 100]]
    """
    out = [list(r) for r in ranges]
    while len(out) < parts:
        out.sort(key=lambda r: r[1] - r[0], reverse=True)
        start, end = out[0]
        if end - start < 2 * min_size:
            break
        mid = start + (end - start) // 2
        out[0:1] = [[start, mid], [mid, end]]
    return sorted(out)


# --------------------------------------------------------------------------- partial files


class PartialFile:
    """A file being downloaded: the bytes on disk and the record of which ranges are done.

    Writers call `write` from any thread; a reader waits on `wait_for` for the contiguous
    prefix to grow. The record is rewritten atomically, at most every second, and only ever
    lists bytes already written, so after kill -9 it can only under-state what is on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record_path = path.with_name(path.name + ".json")
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._rfd: int | None = None
        self._last_save = 0.0
        self.url = ""
        self.size: int | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.done: list[list[int]] = []
        self.failed: BaseException | None = None
        # Bumped whenever the bytes start again from 0, so readers know to start over too.
        self.generation = 0

    # -- record ---------------------------------------------------------------------------
    def load(self, url: str) -> bool:
        """Load the record of an earlier run for *url*; False (and a clean start) if none."""
        try:
            rec = json.loads(self.record_path.read_text())
            if rec.get("url") != url or not self.path.exists():
                raise ValueError("record is for another source")
            self.url, self.size = url, rec["size"]
            self.etag, self.last_modified = rec.get("etag"), rec.get("last_modified")
            on_disk = self.path.stat().st_size
            self.done = merge_ranges([[a, min(b, on_disk)] for a, b in rec["done"]])
            return bool(self.done)
        except (OSError, ValueError, KeyError, TypeError):
            self.url, self.done = url, []
            return False

    def _save(self) -> None:
        rec = {
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "done": self.done,
        }
        atomic_write_text(self.record_path, json.dumps(rec))
        self._last_save = time.monotonic()

    def save(self) -> None:
        with self._cond:
            self._save()

    # -- data -----------------------------------------------------------------------------
    def open(self, *, restart: bool) -> None:
        """Open for writing; *restart* discards bytes and ranges from earlier attempts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart:
            # Tell readers before the bytes go, so a reader never takes a cut file for the end.
            with self._cond:
                self.done = []
                self.generation += 1
                self._cond.notify_all()
        if self._fd is not None:
            os.close(self._fd)
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if restart else 0)
        self._fd = os.open(self.path, flags, 0o644)
        with self._cond:
            self._save()

    def restart(self) -> None:
        self.open(restart=True)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n
        with self._cond:
            self.done = merge_ranges(self.done + [[offset - len(data), offset]])
            if time.monotonic() - self._last_save > _RECORD_INTERVAL:
                self._save()
            self._cond.notify_all()

    def prefix(self) -> int:
        """Length of the contiguous prefix on disk (bytes)."""
        return self.done[0][1] if self.done and self.done[0][0] == 0 else 0

    def mark_stream_complete(self) -> None:
        """The single stream of a file of unknown size has ended."""
        with self._cond:
            self.size = self.prefix()
            self._save()
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self.failed = exc
            self._cond.notify_all()

    def wait_for(self, offset: int, cancel: threading.Event, generation: int) -> int:
        """Block until bytes beyond *offset* are on disk; return the new prefix (or *offset*
        at the end of the file). Raises `StreamRestarted` if the download started over."""
        with self._cond:
            while True:
                if self.generation != generation:
                    raise StreamRestarted()
                if self.failed is not None:
                    raise self.failed
                if cancel.is_set():
                    raise Cancelled()
                prefix = self.prefix()
                if prefix > offset:
                    return prefix
                if self.size is not None and offset >= self.size:
                    return offset
                self._cond.wait(0.5)

    def read(self, offset: int, n: int) -> bytes:
        # Readers have a descriptor of their own: they may start on recorded bytes before the
        # downloader has opened the file for writing.
        if self._rfd is None:
            self._rfd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._rfd, n, offset)

    def close(self) -> None:
        for name in ("_fd", "_rfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def discard(self) -> None:
        """Remove the partial file and its record."""
        self.close()
        for p in (self.path, self.record_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def recorded_bytes(partial: Path) -> int:
    """Bytes a partial file's record says are on disk (0 if there is no usable record)."""
    try:
        rec = json.loads(partial.with_name(partial.name + ".json").read_text())
        return sum(b - a for a, b in merge_ranges(rec.get("done", [])))
    except (OSError, ValueError, TypeError):
        return 0
