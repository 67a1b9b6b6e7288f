"""One progress display for a batch, wherever its tasks run: tasks done, bytes written, rate.

On a terminal it is a rich progress bar; otherwise (a log file, CI, a pipe) one plain line per
task event. Either way the Dask dashboard address is printed first when there is one.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from mirage_data.units import format_size

from .run import BatchEvent

__all__ = ["BatchDisplay", "make_batch_display"]


class BatchDisplay:
    """Plain lines: ``[3/8] done NAME (1.2 s) - 3 done, 1.4 GB written, 210 MB/s``."""

    def __init__(self, total: int, *, where: str = "", dashboard: str | None = None, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.total = total
        self.finished = 0
        self.bytes_written = 0
        self.t0 = time.monotonic()
        if where:
            self._say(f"running {total} task{'s' if total != 1 else ''} on {where}")
        if dashboard:
            self._say(f"Dask dashboard: {dashboard}")

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        return f"{format_size(self.bytes_written)} written, {format_size(self.bytes_written / elapsed)}/s"

    def __call__(self, event: BatchEvent) -> None:
        where = f"[{event.index}/{event.total}]"
        outcome = event.outcome
        if event.kind == "start":
            self._say(f"{where} started {event.task.key}")
            return
        self.finished += 1
        if outcome is not None:
            self.bytes_written += outcome.bytes_written
        if event.kind == "done":
            self._say(
                f"{where} done {event.task.key} ({outcome.seconds:.1f} s) - "
                f"{self.finished}/{self.total}, {self._rate()}"
            )
        elif event.kind == "skipped":
            self._say(f"{where} already there: {event.task.key}")
        else:
            self._say(f"{where} FAILED {event.task.key}: {outcome.error}")

    def close(self) -> None:
        pass


class RichBatchDisplay(BatchDisplay):
    """A rich progress bar with tasks done, bytes written and the rate; failures printed above."""

    def __init__(self, total: int, *, where: str = "", dashboard: str | None = None, stream: IO[str] | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(total, where=where, dashboard=dashboard, stream=stream)
        self.console = Console(file=self.stream)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.bar = self.progress.add_task("tasks", total=total, rate="")
        self.progress.start()

    def __call__(self, event: BatchEvent) -> None:
        if event.kind == "start":
            return
        self.finished += 1
        if event.outcome is not None:
            self.bytes_written += event.outcome.bytes_written
        if event.kind == "failed":
            self.progress.console.print(f"FAILED {event.task.key}: {event.outcome.error}")
        self.progress.update(self.bar, advance=1, rate=self._rate())

    def close(self) -> None:
        self.progress.stop()


def make_batch_display(
    total: int, *, where: str = "", dashboard: str | None = None, quiet: bool = False, stream: IO[str] | None = None
):
    """The display for this output: None when quiet, rich on a terminal, plain lines otherwise."""
    if quiet:
        return None
    stream = stream or sys.stdout
    if stream.isatty():
        return RichBatchDisplay(total, where=where, dashboard=dashboard, stream=stream)
    return BatchDisplay(total, where=where, dashboard=dashboard, stream=stream)
