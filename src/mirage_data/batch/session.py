"""One batch from start to end: open the executor, show the progress display, run the tasks,
close both. The callers (``darks.batch``, ``darks.programs``) only say what the tasks are and
what to do with each outcome."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from .display import make_batch_display
from .executors import BatchExecutor, open_executor
from .run import BatchEvent, BatchSummary, Task, run_tasks

__all__ = ["run_batch"]


def run_batch(
    tasks: Sequence[Task],
    *,
    on_event: Callable[[BatchEvent], None] | None = None,
    display: bool = False,
    configure: Callable[[BatchExecutor, int], Any] | None = None,
    **where,
) -> BatchSummary:
    """Run *tasks* on the executor `open_executor(**where)` opens, as many at once as it runs.

    Parameters
    ----------
    tasks : sequence of Task
    on_event : callable(BatchEvent), optional
        Called in this process for every event, before the display sees it.
    display : bool
        Show one progress display for the batch (`make_batch_display`).
    configure : callable(BatchExecutor, int), optional
        Called with the open executor and the number of tasks that will run at once, before
        any is submitted; may return a context manager held while the tasks run.
    **where
        ``scheduler``, ``workers``, ``jobs``, ``threads_per_worker``, ``client``, ``executor``.
    """
    with open_executor(**where) as batch:
        at_once = min(batch.workers, len(tasks))
        held = configure(batch, at_once) if configure is not None else None
        show = make_batch_display(len(tasks), where=batch.description, dashboard=batch.dashboard) if display else None

        def both(event: BatchEvent) -> None:
            if on_event is not None:
                on_event(event)
            if show is not None:
                show(event)

        try:
            with held if held is not None else contextlib.nullcontext():
                return run_tasks(tasks, batch, on_event=both, in_flight=at_once)
        finally:
            if show is not None:
                show.close()
