"""Run whole-file tasks on an executor: skip finished outputs, report every task, go on after
failures.

A `Task` is one output file (one linearized dark, one prepared exposure) made by an
importable function; the function writes its output atomically (`mirage_data.io.atomic`), so
an output that exists is complete. `run_tasks` keeps about as many tasks in flight as the
executor has workers (so "started" means started), collects each result in this process, and
returns a `BatchSummary`. A worker that dies mid-task (``kill -9``, out of memory) leaves at
most a temporary file named for its host and process; Dask gives the task to another worker,
and the next run removes such leftovers (`mirage_data.io.atomic.remove_stale_temporaries`).

Examples
--------
>>> import concurrent.futures as cf
>>> from mirage_data.batch.run import Task, run_tasks
>>> tasks = [Task(f"square {n}", pow, (n, 2)) for n in range(3)]
>>> with cf.ThreadPoolExecutor(2) as pool:
...     summary = run_tasks(tasks, pool)
>>> [o.value for o in summary.outcomes]
[0, 1, 4]
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirage_data.io.atomic import remove_stale_temporaries

__all__ = ["Task", "TaskOutcome", "BatchEvent", "BatchSummary", "run_tasks", "EVENT_TOPIC"]

#: Topic of the Dask events tasks log as they start (``client.get_events(EVENT_TOPIC)``).
EVENT_TOPIC = "mirage-data"


@dataclass(frozen=True)
class Task:
    """One unit of batch work.

    Attributes
    ----------
    key : str
        A unique, readable name (shown in progress and the summary).
    function : callable
        Importable (picklable) function run on a worker as ``function(*args, **kwargs)``.
    args : tuple
    kwargs : mapping
    outputs : tuple of Path
        The files the task writes; their sizes are counted as bytes written, and
        ``is_finished`` is asked about them.
    """

    key: str
    function: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[Path, ...] = ()


@dataclass
class TaskOutcome:
    """What happened to one task: ``status`` is ``done``, ``skipped`` or ``failed``."""

    key: str
    status: str
    outputs: tuple[Path, ...] = ()
    value: Any = None
    bytes_written: int = 0
    seconds: float = 0.0
    error: str = ""
    worker: str = ""


@dataclass(frozen=True)
class BatchEvent:
    """Progress of `run_tasks`: ``kind`` is ``start``, ``done``, ``skipped`` or ``failed``."""

    kind: str
    task: Task
    index: int
    total: int
    outcome: TaskOutcome | None = None


@dataclass
class BatchSummary:
    """Every task's outcome, in the order the tasks were given."""

    outcomes: list[TaskOutcome] = field(default_factory=list)

    def _with(self, status: str) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[TaskOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[TaskOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[TaskOutcome]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes_written(self) -> int:
        return sum(o.bytes_written for o in self.outcomes)

    def table(self) -> list[str]:
        """One line per task, then the totals."""
        lines = []
        for o in self.outcomes:
            detail = {"done": f"{o.seconds:.1f} s", "skipped": "already there", "failed": o.error}[o.status]
            lines.append(f"{o.status:<7} {o.key}: {detail}")
        lines.append(f"{len(self.done)} done, {len(self.skipped)} already there, {len(self.failed)} failed")
        return lines


def _log_start(key: str) -> None:
    """Tell the Dask client (if any) that this task started here: host and process."""
    if "distributed" not in sys.modules:  # not on a Dask worker: nothing to tell
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(EVENT_TOPIC, {"event": "start", "key": key, "host": socket.gethostname(), "pid": os.getpid()})


def execute_task(key: str, function: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any], outputs: tuple):
    """Run one task on a worker; return (value, seconds, bytes written, worker name)."""
    _log_start(key)
    t0 = time.perf_counter()
    value = function(*args, **dict(kwargs))
    seconds = time.perf_counter() - t0
    written = 0
    for path in outputs:
        try:
            written += os.stat(path).st_size
        except OSError:
            pass
    return value, seconds, written, f"{socket.gethostname()}:{os.getpid()}"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ == "KilledWorker":
        return f"the workers running it died repeatedly ({text})"
    return text


def run_tasks(
    tasks: Sequence[Task],
    executor: cf.Executor | Any,
    *,
    is_finished: Callable[[Task], bool] | None = None,
    on_event: Callable[[BatchEvent], None] | None = None,
    in_flight: int | None = None,
) -> BatchSummary:
    """Run *tasks* on *executor*; never raises for a failing task.

    Parameters
    ----------
    tasks : sequence of Task
    executor : concurrent.futures.Executor or BatchExecutor
        Where to run them (`mirage_data.batch.executors.open_executor` gives one).
    is_finished : callable(Task) -> bool, optional
        True when the task's outputs exist and verify: the task is skipped.
    on_event : callable(BatchEvent), optional
        Called in this process as tasks start, finish, are skipped or fail.
    in_flight : int, optional
        Tasks submitted at once (default: the executor's workers, else 4).

    Returns
    -------
    BatchSummary
    """
    workers = getattr(executor, "workers", None)
    executor = getattr(executor, "executor", executor)
    limit = in_flight or workers or 4
    emit = on_event or (lambda event: None)
    total = len(tasks)
    outcomes: dict[int, TaskOutcome] = {}
    pending: list[int] = []
    for folder in {p.parent for t in tasks for p in t.outputs}:
        remove_stale_temporaries(folder)  # leftovers of writers that died in an earlier run
    for index, task in enumerate(tasks):
        if is_finished is not None and is_finished(task):
            outcomes[index] = TaskOutcome(task.key, "skipped", task.outputs)
            emit(BatchEvent("skipped", task, index + 1, total, outcomes[index]))
        else:
            pending.append(index)
    pending.reverse()
    running: dict[cf.Future, int] = {}

    def submit_next() -> None:
        while pending:
            index = pending.pop()
            task = tasks[index]
            emit(BatchEvent("start", task, index + 1, total))
            try:
                future = executor.submit(execute_task, task.key, task.function, task.args, task.kwargs, task.outputs)
            except Exception as exc:  # e.g. a local pool broken by a killed worker: this task fails, not the run
                outcomes[index] = TaskOutcome(task.key, "failed", task.outputs, error=f"not started: {_describe(exc)}")
                emit(BatchEvent("failed", task, index + 1, total, outcomes[index]))
                continue
            running[future] = index
            return

    try:
        while pending and len(running) < limit:
            submit_next()
        while running:
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                task = tasks[index]
                try:
                    value, seconds, written, worker = future.result()
                except Exception as exc:  # reported per task; the others go on
                    outcome = TaskOutcome(task.key, "failed", task.outputs, error=_describe(exc))
                else:
                    outcome = TaskOutcome(task.key, "done", task.outputs, value, written, seconds, worker=worker)
                outcomes[index] = outcome
                emit(BatchEvent(outcome.status, task, index + 1, total, outcome))
                if pending:
                    submit_next()
    except BaseException:
        for future in running:
            future.cancel()
        raise
    finally:
        for folder in {p.parent for t in tasks for p in t.outputs}:
            remove_stale_temporaries(folder)  # of workers killed during this run
    return BatchSummary([outcomes[i] for i in range(total)])
