"""Telling the user how a run is going.

Three reporters share one small interface: `RichProgress` (per-file and total bars with rate
and ETA, on a terminal), `LogProgress` (plain log lines, when output is not a terminal) and
`QuietProgress` (nothing but errors). `make_progress` picks one.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from mirage_data.units import format_duration, format_size


class QuietProgress:
    """Reports nothing; the base of the others. Every method is thread-safe."""

    def start(self, total_files: int, total_bytes: int) -> None:
        """A run of *total_files* files of about *total_bytes* bytes begins."""

    def file_started(self, key: str, label: str, size: int | None) -> None:
        """A file begins; *size* in bytes where known."""

    def file_resized(self, key: str, size: int | None, already: int) -> None:
        """The file's size became known, or it (re)starts with *already* bytes on disk."""

    def total_changed(self, total_bytes: int) -> None:
        """The run's total became better known (a server told a file's exact size)."""

    def advance(self, key: str, n_bytes: int) -> None:
        """*n_bytes* more bytes of the file arrived."""

    def file_finished(self, key: str, ok: bool, message: str = "") -> None:
        """The file is done (installed, or failed with *message*)."""

    def message(self, text: str) -> None:
        """A line for the user."""

    def stop(self) -> None:
        """The run is over."""


class LogProgress(QuietProgress):
    """Plain lines on a stream: one when a file starts and ends, a total every few seconds."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._files_total = 0
        self._files_done = 0
        self._t0 = time.monotonic()
        self._last = self._t0
        self._labels: dict[str, str] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total_files: int, total_bytes: int) -> None:
        self._files_total, self._total = total_files, total_bytes
        self._t0 = self._last = time.monotonic()

    def file_started(self, key: str, label: str, size: int | None) -> None:
        with self._lock:
            self._labels[key] = label
            self._print(f"fetching {label}" + (f" ({format_size(size)})" if size else ""))

    def total_changed(self, total_bytes: int) -> None:
        with self._lock:
            self._total = total_bytes

    def file_resized(self, key: str, size: int | None, already: int) -> None:
        if already:
            with self._lock:
                self._print(f"resuming {self._labels.get(key, key)} at {format_size(already)}")

    def advance(self, key: str, n_bytes: int) -> None:
        with self._lock:
            self._done += n_bytes
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                rate = self._done / max(now - self._t0, 1e-9)
                self._print(
                    f"  {format_size(self._done)} fetched, {self._files_done}/{self._files_total} files done, "
                    f"{format_size(rate)}/s"
                )

    def file_finished(self, key: str, ok: bool, message: str = "") -> None:
        with self._lock:
            self._files_done += 1
            label = self._labels.pop(key, key)
            self._print(f"{'installed' if ok else 'FAILED'} {label}" + (f": {message}" if message else ""))

    def message(self, text: str) -> None:
        with self._lock:
            self._print(text)

    def stop(self) -> None:
        elapsed = time.monotonic() - self._t0
        if self._done:
            self._print(f"fetched {format_size(self._done)} in {format_duration(elapsed)}")


class RichProgress(QuietProgress):
    """Per-file and total progress bars with rate and ETA (rich)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._lock = threading.Lock()
        self._tasks: dict[str, int] = {}
        self._total = None

    def start(self, total_files: int, total_bytes: int) -> None:
        self._progress.start()
        self._total = self._progress.add_task(f"total ({total_files} files)", total=total_bytes or None)

    def file_started(self, key: str, label: str, size: int | None) -> None:
        with self._lock:
            short = label if len(label) <= 48 else "…" + label[-47:]
            self._tasks[key] = self._progress.add_task(short, total=size)

    def total_changed(self, total_bytes: int) -> None:
        if self._total is not None:
            self._progress.update(self._total, total=total_bytes or None)

    def file_resized(self, key: str, size: int | None, already: int) -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None:
                self._progress.update(task, total=size, completed=already)

    def advance(self, key: str, n_bytes: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._progress.advance(task, n_bytes)
        if self._total is not None:
            self._progress.advance(self._total, n_bytes)

    def file_finished(self, key: str, ok: bool, message: str = "") -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
            if task is not None:
                self._progress.remove_task(task)
            if not ok:
                self._progress.console.print(f"[red]FAILED[/red] {key}: {message}")

    def message(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)

    def stop(self) -> None:
        self._progress.stop()


def make_progress(quiet: bool = False, stream: IO[str] | None = None) -> QuietProgress:
    """Bars on a terminal, log lines otherwise, nothing with *quiet*."""
    if quiet:
        return QuietProgress()
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress()
    return LogProgress(stream)
