"""The batch runner on local worker processes: a worker that dies does not take the run down."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

from mirage_data.batch.run import Task, run_tasks


def square_or_die(n: int) -> int:
    if n == 1:
        os._exit(1)  # the worker process dies mid-task, as under kill -9 or the OOM killer
    return n * n


def test_a_dead_local_worker_fails_its_tasks_not_the_run():
    tasks = [Task(f"n={n}", square_or_die, (n,)) for n in range(4)]
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        summary = run_tasks(tasks, pool, in_flight=1)
    assert [o.status for o in summary.outcomes] == ["done", "failed", "failed", "failed"]
    assert summary.outcomes[0].value == 0
    assert all(o.error for o in summary.failed)
    assert summary.table()[-1] == "1 done, 0 already there, 3 failed"
