"""Prepared darks for a whole program: one task per exposure (yaml file), run in this process,
in local worker processes, or on a Dask cluster, with a map of yaml -> prepared darks.

A task only reads its yaml, its darks and the reference files the yaml names, and writes its
prepared dark(s) atomically: give it yaml files resolved by ``mirage-data prepare`` (their
reference files are paths, not ``crds``), so that workers never need the network. An
exposure whose prepared darks exist, are complete and were made for the same yaml and seed is
skipped, so a rerun after a failure or a kill does only what is left.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirage_data.io.atomic import atomic_write_text

from .prep import (
    FILE_SPLITTING_LIMIT,
    DarkPrepError,
    PreparedDarks,
    default_seed,
    mirage_lines,
    prepare_dark,
    prepared_name,
    read_dark_exposure,
)
from .segments import integration_segments, segment_suffixes

__all__ = ["DARK_MAP_NAME", "DarkPrepRun", "expected_outputs", "prepare_darks"]

#: Name of the JSON map of yaml files to their prepared darks.
DARK_MAP_NAME = "prepared_darks.json"


@dataclass
class DarkPrepRun:
    """Prepared darks of several yaml files.

    Attributes
    ----------
    prepared : list of PreparedDarks
        Made in this run.
    skipped : list of Path
        Yaml files whose prepared darks were already there (complete, same yaml and seed).
    failed : list of (Path, str)
        Yaml files whose dark could not be prepared, with the reason (one line).
    map_path : Path or None
        The JSON map written (yaml -> darks, seed, sources, Python lines).
    tasks : BatchSummary or None
        Every exposure's outcome (``tasks.table()``: the per-task summary).
    """

    prepared: list[PreparedDarks] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    map_path: Path | None = None
    tasks: object = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        lines = []
        for p in self.prepared:
            note = (" (darks reused: fewer than nint)" if p.reused else "") + (
                " (ramp continued past the dark's end)" if p.padded else ""
            )
            lines.append(f"{p.yaml_path.name}: {len(p)} prepared dark file(s), seed {p.seed}{note}")
            lines += [f"    {line}" for line in mirage_lines(p.yaml_path, list(p), p.mode)]
        lines += [f"{path.name}: prepared darks already there" for path in self.skipped]
        lines += [f"{path.name}: error: {why}" for path, why in self.failed]
        if self.map_path is not None:
            lines.append(f"map of yaml files to prepared darks: {self.map_path}")
        return "\n".join(lines)


def expected_outputs(
    yaml_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, pixel_limit: float = FILE_SPLITTING_LIMIT
) -> list[Path]:
    """The prepared dark file(s) `prepare_dark` writes for *yaml_path* (one per segment)."""
    exposure = read_dark_exposure(yaml_path)
    folder = exposure.output_dir if out_dir is None else Path(out_dir)
    ny, nx = exposure.shape
    split, segments = integration_segments(
        nx, ny, exposure.ngroup, exposure.pattern.nframe, exposure.pattern.nskip, exposure.nint, pixel_limit
    )
    return [folder / prepared_name(exposure, s) for s in segment_suffixes(split, len(segments))]


def _is_current(paths: Sequence[Path], yaml_path: Path, seed: int) -> bool:
    """The files exist, are complete (sizes agree with headers) and were made for this yaml and seed."""
    from mirage_data.io.fits import FitsLayoutError, open_layouts

    for path in paths:
        try:
            primary, _, _ = open_layouts(path)
        except (FileNotFoundError, FitsLayoutError, OSError):
            return False
        if primary.get("YAMLFILE") != str(yaml_path) or primary.get("DARKSEED") != seed:
            return False
    return True


def _prepare_job(yaml_path: str, out_dir: str | None, seed: int | None, options: dict) -> PreparedDarks:
    """`prepare_dark` as a batch task (runs on a worker)."""
    return prepare_dark(yaml_path, out_dir, seed=seed, **options)


def _mode(yaml_path: Path) -> str:
    import yaml

    try:
        return str(yaml.safe_load(yaml_path.read_text("utf-8"))["Inst"].get("mode", "imaging"))
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return "imaging"


def prepare_darks(
    yaml_paths: Sequence[str | os.PathLike],
    map_dir: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    executor: cf.Executor | None = None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    jobs: int | None = None,
    display: bool = False,
    **options,
) -> DarkPrepRun:
    """`prepare_dark` for each yaml file; a failure is reported and the others carry on.

    Without *executor*, *client*, *scheduler*, *workers* or *jobs* the exposures are prepared
    one after the other in this process. With any of them each exposure is a task on that
    executor (see `mirage_data.batch.executors.open_executor`); the workers then never ask
    CRDS (``use_crds=False``): give yaml files whose reference files are paths.

    Parameters
    ----------
    yaml_paths : sequence of path-like
    map_dir : path-like, optional
        Where to write `DARK_MAP_NAME`: for each yaml, its dark files (what to pass as
        ``override_dark``), the seed, the dark integration of each integration and the Python
        lines that run Mirage with them.
    out_dir : path-like, optional
        Folder for the darks (default: each yaml's ``Output:directory``, as Mirage).
    seed : int, optional
        Seed for every exposure (default: each exposure's own, `default_seed`).
    overwrite : bool
        Prepare again exposures whose prepared darks are already there.
    executor, client, scheduler, workers, threads_per_worker, jobs
        Where the tasks run (`mirage_data.batch.executors.open_executor`).
    display : bool
        Show one progress display for the batch (bar on a terminal, else plain lines).
    **options
        Passed to `prepare_dark`.

    Returns
    -------
    DarkPrepRun
    """
    from mirage_data.batch.executors import check_executor_options
    from mirage_data.batch.run import Task
    from mirage_data.batch.session import run_batch

    check_executor_options(scheduler=scheduler, workers=workers, jobs=jobs, threads_per_worker=threads_per_worker)
    run = DarkPrepRun()
    map_path = None if map_dir is None else Path(map_dir) / DARK_MAP_NAME
    try:
        previous = json.loads(map_path.read_text("utf-8")) if map_path is not None else {}
        previous = previous if isinstance(previous, dict) else {}
    except (OSError, ValueError):
        previous = {}
    entries: dict[str, dict] = {}
    tasks: list[Task] = []
    yamls: dict[str, Path] = {}
    for y in map(Path, yaml_paths):
        try:
            outputs = expected_outputs(y, out_dir, options.get("pixel_limit", FILE_SPLITTING_LIMIT))
            exposure_seed = default_seed(read_dark_exposure(y)) if seed is None else int(seed)
        except (DarkPrepError, OSError) as exc:
            run.failed.append((y, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        if not overwrite and _is_current(outputs, y, exposure_seed):
            run.skipped.append(y)
            if str(y) in previous:
                entries[str(y)] = previous[str(y)]
            continue
        yamls[str(y)] = y
        args = (str(y), None if out_dir is None else str(out_dir), seed, options)
        tasks.append(Task(str(y), _prepare_job, args, outputs=tuple(outputs)))

    def record(done: PreparedDarks) -> None:
        done.mode = _mode(done.yaml_path)
        run.prepared.append(done)
        entries[str(done.yaml_path)] = {
            "override_dark": done.override_dark,
            "seed": done.seed,
            "sources": [str(s.path) + f"[{s.integration}]" for s in done.sources],
            "reused": done.reused,
            "padded": done.padded,
            "python": mirage_lines(done.yaml_path, list(done), done.mode),
        }

    if tasks and not any(v is not None for v in (executor, client, scheduler, workers, jobs)):
        for task in tasks:  # in this process, one after the other
            try:
                record(task.function(*task.args))
            except (DarkPrepError, OSError) as exc:
                run.failed.append((yamls[task.key], str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    elif tasks:
        # workers compute only: no CRDS queries from them
        options = {**options, "use_crds": False, "threads": 1}
        tasks = [Task(t.key, t.function, (*t.args[:3], options), outputs=t.outputs) for t in tasks]

        def on_event(event) -> None:
            if event.kind == "done":
                record(event.outcome.value)
            elif event.kind == "failed":
                run.failed.append((yamls[event.task.key], event.outcome.error.splitlines()[0]))

        run.tasks = run_batch(
            tasks,
            on_event=on_event,
            display=display,
            scheduler=scheduler,
            workers=workers,
            jobs=jobs,
            threads_per_worker=threads_per_worker,
            client=client,
            executor=executor,
        )
    if map_path is not None:
        run.map_path = map_path
        atomic_write_text(map_path, json.dumps(entries, indent=1) + "\n")
    return run
