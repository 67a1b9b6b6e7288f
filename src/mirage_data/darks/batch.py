"""Linearize every raw dark of a MIRAGE_DATA folder, several files at once, and record them.

Each file is one task (`mirage_data.darks.linearize.linearize_job`) run on an executor: worker
processes started here, or one the caller gives (a Dask client's ``get_executor()``). The
outputs are recorded in the folder's inventory as made locally.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from astropy.io import fits

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
    """Outcome of `linearize_all`: lists of output paths, and (raw path, error) pairs."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

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
    overwrite: bool = False,
    include_dq: bool = False,
    fsync: bool = True,
    record: bool = True,
    progress: Callable[[LinearizeEvent], None] | None = None,
) -> LinearizeSummary:
    """Linearize every raw dark of a MIRAGE_DATA folder into ``darks/linearized``.

    Outputs that exist are skipped (an output only exists once complete, see
    `linearize_dark`), so an interrupted run resumes where it stopped. Files run as separate
    tasks; a failure of one file is reported and the others go on. Each output is recorded in
    the folder's inventory as made locally (size and sha256), so that ``mirage-data status``
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
        Files at once (default: the number of CPUs, at most 4; each needs about 0.5 GB).
    executor : concurrent.futures.Executor, optional
        Where the files run (e.g. a Dask client's ``get_executor()``); not shut down here.
        Default: *jobs* worker processes started for this call.
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

    Returns
    -------
    LinearizeSummary
    """
    pairs = find_raw_darks(mirage_data)
    root = _mirage_data_root(mirage_data)
    summary = LinearizeSummary()
    total = len(pairs)
    emit = progress or (lambda event: None)
    directory = CalibrationDirectory(calibration_dir) if calibration_dir is not None else None
    todo = []
    for index, (raw, output) in enumerate(pairs, start=1):
        if output.exists() and not overwrite:
            summary.skipped.append(output)
            emit(LinearizeEvent("skipped", raw, output, index, total))
            continue
        try:
            header = open_raw_dark(raw).header
            paths = resolve_calibration(header, calibration_dir=directory, use_crds=use_crds)
            output.parent.mkdir(parents=True, exist_ok=True)
        except (DarkFormatError, CalibrationError, OSError) as exc:
            summary.failed.append((raw, str(exc)))
            emit(LinearizeEvent("failed", raw, output, index, total, error=str(exc)))
            continue
        todo.append((index, raw, output, paths))
    if not todo:
        return summary
    jobs = jobs or max(1, min(os.cpu_count() or 1, 4))
    workers = min(jobs, len(todo))
    options = {"include_dq": include_dq, "overwrite": overwrite, "fsync": fsync}
    if workers > 1:
        options["threads"] = 1  # the files already share the CPUs
    inventory = _Recorder(root) if record else None
    with contextlib.ExitStack() as stack:
        own_pool = executor is None
        if own_pool:
            # spawn: workers must not inherit locks of threads the caller may be running
            context = multiprocessing.get_context("spawn")
            executor = stack.enter_context(cf.ProcessPoolExecutor(max_workers=workers, mp_context=context))
        pending = list(todo)
        running = {}

        def submit_next() -> None:
            index, raw, output, paths = pending.pop(0)
            emit(LinearizeEvent("start", raw, output, index, total))
            with _workers_skip_main() if own_pool else contextlib.nullcontext():
                future = executor.submit(linearize_job, str(raw), str(output), paths, options)
            running[future] = (index, raw, output)

        # keep exactly `workers` files in flight, so that "start" means started
        while pending and len(running) < workers:
            submit_next()
        while running:
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index, raw, output = running.pop(future)
                try:
                    seconds, size, sha256 = future.result()
                    if inventory is not None:
                        inventory.add(raw, output, size, sha256)
                except Exception as exc:  # reported per file; the other files go on
                    message = str(exc) or type(exc).__name__
                    summary.failed.append((raw, message))
                    emit(LinearizeEvent("failed", raw, output, index, total, error=message))
                else:
                    summary.done.append(output)
                    emit(LinearizeEvent("done", raw, output, index, total, seconds=seconds))
                if pending:
                    submit_next()
    return summary


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
