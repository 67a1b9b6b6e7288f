"""Linearize every raw dark of a MIRAGE_DATA folder, several files at once, and record them.

Each file is one task (`mirage_data.darks.linearize.linearize_job`) run on an executor: worker
processes started here, or one the caller gives (a Dask client's ``get_executor()``). The
outputs are recorded in the folder's inventory as made locally.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from astropy.io import fits

from mirage_data.batch.run import BatchSummary
from mirage_data.calibration.reference_files import CalibrationDirectory, CalibrationError, resolve_calibration
from mirage_data.collection.catalog import INSTRUMENTS, linearized_name

from .linearize import linearize_job
from .raw import DarkFormatError, open_raw_dark

__all__ = ["default_output_name", "find_raw_darks", "LinearizeEvent", "LinearizeSummary", "linearize_all"]


# ---------------------------------------------------------------------------------------------
# All darks of a MIRAGE_DATA folder


def _mirage_data_root(mirage_data: str | os.PathLike | None) -> Path:
    if mirage_data is None:
        mirage_data = os.environ.get("MIRAGE_DATA")
        if not mirage_data:
            raise FileNotFoundError("no MIRAGE_DATA folder given and the MIRAGE_DATA environment variable is not set")
    root = Path(mirage_data).expanduser().absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"MIRAGE_DATA folder {root} does not exist")
    if not any((root / inst).is_dir() for inst in INSTRUMENTS) and (root / "mirage_data").is_dir():
        root = root / "mirage_data"
    return root


def default_output_name(raw_path: str | os.PathLike, instrument: str | None = None) -> str:
    """File name of the linearized dark of a raw dark, in the collection's naming.

    >>> default_output_name("NRCNRCA1-DARK-6008_1_481_SE_2016-01-09T00h03m58_level1b_uncal.fits", "nircam")
    'Linearized_Dark_and_SBRefpix_NRCNRCA1-DARK-6008_1_481_SE_2016-01-09T00h03m58_uncal.fits'

    Parameters
    ----------
    raw_path : path-like
    instrument : str, optional
        nircam, niriss or fgs (default: the file's INSTRUME keyword).
    """
    path = Path(raw_path)
    if instrument is None:
        try:
            instrument = str(fits.getval(path, "INSTRUME", 0))
        except (OSError, KeyError, IndexError, ValueError):
            instrument = ""
    instrument = instrument.strip().lower()
    name = path.name if path.name.endswith((".fits", ".fits.gz")) else path.name + ".fits"
    if instrument not in INSTRUMENTS:
        return name[: -len(".fits")] + "_linearized.fits" if name.endswith(".fits") else name + "_linearized"
    return PurePosixPath(linearized_name(f"{instrument}/darks/raw/{name}")).name


def find_raw_darks(mirage_data: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """Raw darks of a MIRAGE_DATA folder and the paths of their linearized counterparts.

    Raw darks are the ``*.fits`` files below ``<instrument>/darks/raw/``; each output path is
    the collection's name for the linearized dark (`mirage_data.catalog.linearized_name`).

    Returns
    -------
    list of (raw path, linearized path)
    """
    root = _mirage_data_root(mirage_data)
    pairs = []
    for inst in INSTRUMENTS:
        folder = root / inst / "darks" / "raw"
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.fits")):
            if path.name.startswith("."):
                continue
            rel = PurePosixPath(path.relative_to(root).as_posix())
            pairs.append((path, root / linearized_name(str(rel))))
    return pairs


@dataclass(frozen=True)
class LinearizeEvent:
    """Progress of `linearize_all`.

    Attributes
    ----------
    kind : str
        ``start``, ``done``, ``skipped`` (output exists) or ``failed``.
    raw, output : Path
    index, total : int
        Position of the file (1-based) among all raw darks found.
    seconds : float
        Time taken (``done``).
    error : str
        What went wrong (``failed``).
    """

    kind: str
    raw: Path
    output: Path
    index: int
    total: int
    seconds: float = 0.0
    error: str = ""


@dataclass
class LinearizeSummary:
    """Outcome of `linearize_all`: lists of output paths, and (raw path, error) pairs.

    ``tasks`` has every file's outcome as a `mirage_data.batch.run.BatchSummary` (its
    ``table()`` is the per-task summary the command prints).
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    tasks: BatchSummary | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def linearize_all(
    mirage_data: str | os.PathLike | None = None,
    *,
    calibration_dir: str | os.PathLike | None = None,
    use_crds: bool = True,
    jobs: int | None = None,
    executor: cf.Executor | None = None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    overwrite: bool = False,
    include_dq: bool = False,
    fsync: bool = True,
    record: bool = True,
    progress: Callable[[LinearizeEvent], None] | None = None,
    display: bool = False,
) -> LinearizeSummary:
    """Linearize every raw dark of a MIRAGE_DATA folder into ``darks/linearized``.

    Each file is one task, run in local worker processes, on a local Dask cluster
    (*workers*), on an existing one (*scheduler* or *client*) or on any *executor*. This
    process alone looks up the calibration files (CRDS included) and writes the inventory;
    the tasks only read their inputs and write their output (atomically). An output that
    exists and is complete (its size agrees with its headers, and with the inventory where
    recorded) is skipped, so a rerun after a failure or a kill does only what is left. A
    failure of one file is reported and the others go on. Each output is recorded in the
    folder's inventory as made locally (size and sha256), so that ``mirage-data status``
    counts it and ``verify`` re-hashes it.

    Parameters
    ----------
    mirage_data : path-like, optional
        The MIRAGE_DATA folder (default: the ``MIRAGE_DATA`` environment variable).
    calibration_dir : path-like, optional
        Folder of reference files matched by REFTYPE and DETECTOR (else CRDS is asked).
    use_crds : bool
        Ask CRDS for reference files not found otherwise.
    jobs : int, optional
        Local worker processes when no Dask cluster is used (default: CPUs, at most 4; each
        file needs about 0.3 GB).
    executor : concurrent.futures.Executor, optional
        Where the files run; not shut down here.
    client : distributed.Client, optional
        A Dask client to run the files on; not closed here.
    scheduler : str, optional
        Address (or scheduler-file path) of an existing Dask scheduler.
    workers : int, optional
        Start a local Dask cluster of this many worker processes.
    threads_per_worker : int
        Threads per local Dask worker (each file uses one).
    overwrite : bool
        Linearize again files whose output exists.
    include_dq : bool
        Also write PIXELDQ and GROUPDQ.
    fsync : bool
        Flush each output to disk before renaming it into place (default: yes, so that a
        finished file survives a power cut and is never mistaken for one after it).
    record : bool
        Record the outputs in the inventory.
    progress : callable(LinearizeEvent), optional
        Called in this process as files start, finish, are skipped or fail.
    display : bool
        Show one progress display for the whole batch on standard output (a bar on a
        terminal, plain lines otherwise; the Dask dashboard address when there is one).

    Returns
    -------
    LinearizeSummary
    """
    from mirage_data.batch.executors import check_executor_options
    from mirage_data.batch.run import Task
    from mirage_data.batch.session import run_batch

    check_executor_options(scheduler=scheduler, workers=workers, jobs=jobs, threads_per_worker=threads_per_worker)
    pairs = find_raw_darks(mirage_data)
    root = _mirage_data_root(mirage_data)
    summary = LinearizeSummary()
    total = len(pairs)
    emit = progress or (lambda event: None)
    directory = CalibrationDirectory(calibration_dir) if calibration_dir is not None else None
    recorder = _Recorder(root) if record else None
    tasks, raws, pre_failed = [], {}, []
    options = {"include_dq": include_dq, "overwrite": True, "fsync": fsync, "threads": 1}
    for index, (raw, output) in enumerate(pairs, start=1):
        if not overwrite and _finished(output, root, recorder):
            summary.skipped.append(output)
            emit(LinearizeEvent("skipped", raw, output, index, total))
            continue
        try:
            header = open_raw_dark(raw).header
            paths = resolve_calibration(header, calibration_dir=directory, use_crds=use_crds)
            output.parent.mkdir(parents=True, exist_ok=True)
        except (DarkFormatError, CalibrationError, OSError) as exc:
            summary.failed.append((raw, str(exc)))
            pre_failed.append((raw, output, str(exc)))
            emit(LinearizeEvent("failed", raw, output, index, total, error=str(exc)))
            continue
        key = raw.relative_to(root).as_posix()
        raws[key] = (index, raw, output)
        tasks.append(Task(key, linearize_job, (str(raw), str(output), paths, options), outputs=(output,)))
    if not tasks:
        return summary

    def on_event(event) -> None:
        index, raw, output = raws[event.task.key]
        outcome = event.outcome
        if event.kind == "start":
            emit(LinearizeEvent("start", raw, output, index, total))
        elif event.kind == "done":
            seconds, size, sha256 = outcome.value
            if recorder is not None:
                recorder.add(raw, output, size, sha256)
            summary.done.append(output)
            emit(LinearizeEvent("done", raw, output, index, total, seconds=seconds))
        elif event.kind == "failed":
            summary.failed.append((raw, outcome.error))
            emit(LinearizeEvent("failed", raw, output, index, total, error=outcome.error))

    def configure(batch, at_once: int):
        # one thread per file when files run side by side (Dask workers: the threads they were given)
        options["threads"] = 1 if at_once > 1 or batch.client is not None else None
        local_pool = isinstance(batch.executor, cf.ProcessPoolExecutor) and executor is None
        return _workers_skip_main() if local_pool else None

    if jobs is None and executor is None:
        jobs = max(1, min(os.cpu_count() or 1, 4, len(tasks)))
    summary.tasks = run_batch(
        tasks,
        on_event=on_event,
        display=display,
        configure=configure,
        scheduler=scheduler,
        workers=workers,
        jobs=jobs,
        threads_per_worker=threads_per_worker,
        client=client,
        executor=executor,
    )
    return summary


def _finished(output: Path, root: Path, recorder: _Recorder | None) -> bool:
    """True if *output* exists and is complete: its size agrees with its FITS headers and,
    where the inventory records it, with the record."""
    from mirage_data.io.fits import FitsLayoutError, open_layouts

    try:
        size = output.stat().st_size
        open_layouts(output)
    except (FileNotFoundError, FitsLayoutError, OSError):
        return False
    if recorder is not None:
        recorded = recorder.recorded_size(output)
        if recorded is not None and recorded != size:
            return False
    return True


@contextlib.contextmanager
def _workers_skip_main():
    """Start spawned workers without re-running the parent's main script.

    A spawned worker first imports the parent's ``__main__`` (for ``mirage-data`` that is the
    command line with its HTTP and gzip stack), which a linearization task never uses; the
    task only needs `mirage_data.darks.linearize`. Workers start during ``submit``, so for that
    moment the parent's ``__main__`` is replaced by an empty module (no file, no spec): the
    workers then skip that import.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _Recorder:
    """Records linearized darks in the inventory of a MIRAGE_DATA folder (made locally)."""

    def __init__(self, root: Path) -> None:
        from mirage_data.install.inventory import Inventory
        from mirage_data.install.upkeep import remembered_catalog

        self.root = root
        self.inventory = Inventory.load(root)
        self.catalog = remembered_catalog(root)

    def recorded_size(self, output: Path) -> int | None:
        """Size of *output* as the inventory records it (None when not recorded)."""
        out_rel = output.relative_to(self.root).as_posix()
        record = self.inventory.get(out_rel + ".gz") or self.inventory.get(out_rel)
        if record is None:
            return None
        return next((f.size for f in record.files if f.path == out_rel), None)

    def add(self, raw: Path, output: Path, size: int, sha256: str) -> None:
        from mirage_data.install.inventory import MADE, InstalledFile, Record

        out_rel = output.relative_to(self.root).as_posix()
        raw_rel = raw.relative_to(self.root).as_posix()
        # the collection lists its linearized darks compressed; the record is kept under that
        # name when the catalog has it, so that status counts the file as installed
        key = out_rel + ".gz" if out_rel + ".gz" in self.catalog else out_rel
        raw_record = self.inventory.get(raw_rel + ".gz") or self.inventory.get(raw_rel)
        source_size = raw.stat().st_size
        self.inventory.add(
            Record(
                relative_path=key,
                source=raw_rel,
                source_size=source_size,
                source_sha256=_installed_sha256(raw_record, raw_rel),
                files=[InstalledFile(out_rel, size, sha256)],
                catalog_version=self.catalog.version,
                origin=MADE,
            )
        )


def _installed_sha256(record, path: str) -> str:
    """sha256 of an installed file as its inventory record has it ('' when not recorded)."""
    if record is None:
        return ""
    return next((f.sha256 for f in record.files if f.path == path), "")
