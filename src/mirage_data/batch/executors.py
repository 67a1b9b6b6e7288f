"""Where batch tasks run: local worker processes, a local Dask cluster, or an existing one.

`open_executor` gives a `concurrent.futures.Executor` in every case, so the code that submits
tasks is the same for all three. Dask is optional (``pip install "mirage-data[dask]"``) and
imported only when asked for.

Sizing (see the README): a full-frame dark task holds about 0.3-0.5 GB whatever the dark's
length, and keeps one core busy; give each Dask worker one thread per core it may use
(``threads_per_worker``) and at least 1 GB of memory per thread.

Examples
--------
>>> from mirage_data.batch.executors import open_executor
>>> with open_executor(jobs=2) as batch:
...     print(batch.description)
...     batch.executor.submit(pow, 2, 10).result()
2 local worker processes
1024
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchSetupError", "BatchExecutor", "check_executor_options", "open_executor", "DASK_EXTRA"]

#: How to install the optional Dask support.
DASK_EXTRA = 'pip install "mirage-data[dask]"'


class BatchSetupError(ValueError):
    """The executor cannot be opened (bad options, Dask missing, scheduler unreachable)."""


@dataclass
class BatchExecutor:
    """An open executor and what to tell the user about it.

    Attributes
    ----------
    executor : concurrent.futures.Executor
        Where tasks are submitted.
    description : str
        One line: what runs the tasks.
    dashboard : str or None
        The Dask dashboard address, when there is one.
    client : distributed.Client or None
        The Dask client (None for local processes).
    workers : int
        Tasks that can run at once.
    """

    executor: cf.Executor
    description: str
    dashboard: str | None = None
    client: Any = None
    workers: int = 1


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise BatchSetupError(f"--scheduler and --workers need Dask, which is not installed: {DASK_EXTRA}") from None
    return distributed


def _dask_threads(client) -> int:
    info = client.scheduler_info()
    return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))


def check_executor_options(
    *, scheduler: str | None = None, workers: int | None = None, jobs: int | None = None, threads_per_worker: int = 1
) -> None:
    """Refuse contradictory or meaningless executor options (before any work starts).

    Raises
    ------
    BatchSetupError
    """
    if scheduler is not None and workers is not None:
        raise BatchSetupError("give either --scheduler (an existing cluster) or --workers (a local one), not both")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise BatchSetupError(f"--scheduler must be a scheduler address or file, not {scheduler!r}")
    for name, value in (("workers", workers), ("jobs", jobs), ("threads_per_worker", threads_per_worker)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BatchSetupError(f"{name} must be a whole number of at least 1, not {value!r}")


@contextlib.contextmanager
def open_executor(
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    jobs: int | None = None,
    threads_per_worker: int = 1,
    client: Any = None,
    executor: cf.Executor | None = None,
) -> Iterator[BatchExecutor]:
    """Open the executor batch tasks run on, and close what it opened on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``) or a scheduler file
        (a path to its JSON).
    workers : int, optional
        Start a local Dask cluster of this many worker processes.
    jobs : int, optional
        Without Dask: local worker processes (default: CPUs, at most 4).
    threads_per_worker : int
        Threads of each local Dask worker (the algorithms use the threads they are given).
    client : distributed.Client, optional
        Use this Dask client (not closed on exit).
    executor : concurrent.futures.Executor, optional
        Use this executor as it is (not shut down on exit).

    Raises
    ------
    BatchSetupError
        Both ``scheduler`` and ``workers`` given, a count below 1, Dask missing, or the
        scheduler unreachable.
    """
    check_executor_options(scheduler=scheduler, workers=workers, jobs=jobs, threads_per_worker=threads_per_worker)
    if executor is not None:
        yield BatchExecutor(executor, f"the given executor ({type(executor).__name__})", workers=jobs or 1)
        return
    if client is not None:
        yield BatchExecutor(
            client.get_executor(pure=False),
            f"Dask cluster at {client.scheduler.address}",
            getattr(client, "dashboard_link", None),
            client,
            _dask_threads(client),
        )
        return
    if scheduler is None and workers is None:
        n = jobs or max(1, min(os.cpu_count() or 1, 4))
        # spawn: workers must not inherit locks held by the caller's threads
        pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield BatchExecutor(pool, f"{n} local worker process{'es' if n > 1 else ''}", workers=n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    distributed = _import_distributed()
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                if scheduler.endswith(".json") and os.path.exists(scheduler):
                    dask_client = distributed.Client(scheduler_file=scheduler, timeout="20s")
                else:
                    dask_client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise BatchSetupError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            stack.callback(dask_client.close)
            where = f"Dask cluster at {dask_client.scheduler.address}"
        else:
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address="127.0.0.1:0",
                host="127.0.0.1",
                # a failing task is reported once, by run_tasks, not also as a worker traceback
                silence_logs=logging.CRITICAL,
            )
            stack.callback(cluster.close)
            dask_client = distributed.Client(cluster)
            stack.callback(dask_client.close)
            where = f"local Dask cluster of {workers} worker process{'es' if workers > 1 else ''}"
        yield BatchExecutor(
            dask_client.get_executor(pure=False),
            where,
            getattr(dask_client, "dashboard_link", None),
            dask_client,
            _dask_threads(dask_client),
        )
