"""The public entry point: `download_reffiles`, Mirage's call, made fast, resumable and verified.

Examples
--------
Mirage's own call keeps working::

    from mirage_data import download_reffiles
    download_reffiles("/data/reffiles", instrument="all", psf_version="gridded", dark_type="linearized")

Fetch one linearized dark per NIRCam detector from a mirror on a shared disk::

    download_reffiles("/data/reffiles", instrument="nircam", single_dark=True,
                      mirror="/shared/mirage_reference_files")
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock, Timeout

from mirage_data.collection.catalog import Catalog, load_catalog
from mirage_data.collection.layout import export_lines, mirage_data_path
from mirage_data.collection.selection import Selection
from mirage_data.install.inventory import Inventory
from mirage_data.install.state import lock_path
from mirage_data.install.upkeep import files_to_repair, remember_source, remembered_base, remembered_catalog
from mirage_data.progress import QuietProgress, make_progress
from mirage_data.units import format_duration, format_size

from .errors import DownloadFailed, DownloadFolderError, LockedError, NotEnoughSpace  # noqa: F401 (public here)
from .fetcher import Fetcher, FetchReport, local_mirror_path
from .plan import Plan, make_plan
from .transfer import TransferOptions

MIRROR_ENV = "MIRAGE_DATA_MIRROR"


@dataclass
class DownloadResult:
    """What a download did.

    Attributes
    ----------
    mirage_data : Path
        The folder to point ``MIRAGE_DATA`` at.
    plan : Plan
        The plan it followed (files and their state before the run).
    report : FetchReport or None
        Per-file results (None for a dry run or when nothing was missing).
    """

    mirage_data: Path
    plan: Plan
    report: FetchReport | None

    @property
    def export_lines(self) -> list[str]:
        return export_lines(self.mirage_data)

    def summary(self) -> str:
        """One line: what was installed, how much was fetched, how long it took."""
        n = len(self.plan.files)
        if self.report is None:
            return f"{n} files selected, all already installed in {self.mirage_data}"
        ok = sum(r.ok for r in self.report.results)
        already = n - len(self.report.results)
        return (
            f"{ok} files installed, {already} already present, {len(self.report.failed)} failed; "
            f"fetched {format_size(self.report.bytes_fetched)} in {format_duration(self.report.seconds)}"
        )


def resolve_base(mirror: str | os.PathLike | None, catalog: Catalog) -> str:
    """Where to fetch from: *mirror*, else ``$MIRAGE_DATA_MIRROR``, else the catalog's base URL."""
    base = os.fspath(mirror) if mirror is not None else os.environ.get(MIRROR_ENV) or catalog.base_url
    local = local_mirror_path(base)
    if local is not None and not local.is_dir():
        raise FileNotFoundError(f"mirror folder {local} does not exist (give an http(s) URL or an existing folder)")
    return base


def prepare_folder(download_path: str | os.PathLike) -> Path:
    """Create ``<download_path>/mirage_data`` if needed and check it is writable."""
    mirage_data = mirage_data_path(download_path)
    try:
        mirage_data.mkdir(parents=True, exist_ok=True)
        probe = mirage_data / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DownloadFolderError(
            f"cannot write to {mirage_data}: {exc.strerror or exc}; give a download_path in a folder you can write to"
        ) from None
    return mirage_data


@contextmanager
def run_lock(mirage_data: Path, wait: bool = True, progress: QuietProgress | None = None) -> Iterator[None]:
    """Hold the lock of *mirage_data* so two runs cannot interfere.

    With *wait* a second run waits (saying so); without, it raises `LockedError`.
    """
    path = lock_path(mirage_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise LockedError(
                f"another mirage-data run is using {mirage_data}; wait for it to finish, or run again without --no-wait"
            ) from None
        (progress or QuietProgress()).message(
            f"another mirage-data run is using {mirage_data}; waiting for it to finish..."
        )
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def download_reffiles(
    download_path: str | os.PathLike,
    instrument: str | Sequence[str] = "all",
    psf_version: str = "gridded",
    dark_type: str = "linearized",
    skip_darks: bool = False,
    single_dark: bool = False,
    skip_cosmic_rays: bool = False,
    skip_psfs: bool = False,
    skip_soss: bool = False,
    *,
    mirror: str | os.PathLike | None = None,
    catalog: Catalog | str | os.PathLike | None = None,
    jobs: int = 4,
    connections: int = 4,
    force: bool = False,
    dry_run: bool = False,
    keep_archives: bool = False,
    link: bool = False,
    wait: bool = True,
    quiet: bool = False,
    progress: QuietProgress | None = None,
    options: TransferOptions | None = None,
    raise_on_failure: bool = True,
) -> DownloadResult:
    """Download the Mirage reference files and install them in the layout Mirage reads.

    Files go to ``<download_path>/mirage_data`` (point ``MIRAGE_DATA`` there). Already
    installed files are not fetched again; interrupted downloads resume.

    Parameters
    ----------
    download_path : str or path
        Folder to hold ``mirage_data`` (created if needed).
    instrument : str or list of str
        ``nircam``, ``niriss``, ``fgs``, several (list or comma-separated), or ``all``.
    psf_version : str
        ``gridded`` (default). ``subpixel`` (legacy libraries) is no longer in the collection.
    dark_type : str
        ``linearized`` (default), ``raw`` or ``both``.
    skip_darks, single_dark, skip_cosmic_rays, skip_psfs, skip_soss : bool
        Leave out darks, keep one dark per detector, leave out cosmic-ray libraries, PSF
        libraries, or NIRISS SOSS PSFs.
    mirror : str or path, optional
        Fetch from here instead: an ``http(s)://`` base URL, or a local or network-share folder
        laid out like the collection. Default: ``$MIRAGE_DATA_MIRROR``, else the STScI server.
    catalog : Catalog or path, optional
        The collection's catalog (default: the packaged catalog of the real collection).
    jobs, connections : int
        Files fetched at once, and connections per large file.
    force : bool
        Go ahead even if the selection looks too large for the free disk space.
    dry_run : bool
        Plan only: fetch nothing.
    keep_archives : bool
        Keep the fetched ``.gz``/``.tar.gz`` files (below ``mirage_data/.mirage-data/archives``).
    link : bool
        From a local mirror, link to uncompressed files instead of copying them.
    wait : bool
        If another run holds this ``MIRAGE_DATA``, wait for it (default) instead of failing.
    quiet : bool
        No progress output.
    progress : QuietProgress, optional
        A progress reporter (default: bars on a terminal, log lines otherwise).
    options : TransferOptions, optional
        Timeouts, retries and so on (``jobs``/``connections`` override its counts).
    raise_on_failure : bool
        Raise `DownloadFailed` if any file failed (default); otherwise return the result.

    Returns
    -------
    DownloadResult
        With the ``MIRAGE_DATA`` path, the plan and per-file results.

    Raises
    ------
    SelectionError
        An option value that is not accepted (the message lists the accepted ones).
    NotEnoughSpace
        The selection will not fit (and ``force`` is False).
    DownloadFolderError, LockedError, DownloadFailed
    """
    selection = Selection(
        instrument=instrument,
        psf_version=psf_version,
        dark_type=dark_type,
        single_dark=single_dark,
        skip_darks=skip_darks,
        skip_cosmic_rays=skip_cosmic_rays,
        skip_psfs=skip_psfs,
        skip_soss=skip_soss,
    )
    if not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    base = resolve_base(mirror, catalog)
    options = replace(options or TransferOptions(), jobs=jobs, connections=connections)
    progress = progress or make_progress(quiet)

    if dry_run:
        plan = make_plan(download_path, selection, catalog)
        return DownloadResult(plan.mirage_data, plan, None)

    mirage_data = prepare_folder(download_path)
    with run_lock(mirage_data, wait=wait, progress=progress):
        inventory = Inventory.load(mirage_data)
        plan = make_plan(download_path, selection, catalog, inventory)
        if not force:
            plan.check_space()
        remember_source(mirage_data, base, catalog)
        todo = plan.entries_to_fetch
        if not todo:
            return DownloadResult(mirage_data, plan, None)
        fetcher = Fetcher(
            mirage_data,
            base,
            inventory,
            options,
            progress,
            link=link,
            keep_archives=keep_archives,
            catalog_version=catalog.version,
        )
        report = fetcher.run(todo)
    result = DownloadResult(mirage_data, plan, report)
    if report.failed and raise_on_failure:
        lines = [f"{len(report.failed)} of {len(report.results)} files failed:"]
        lines += [f"  {r.entry.relative_path}: {r.error}" for r in report.failed]
        lines.append("Installed files are kept; run the same command again to retry the failed ones.")
        raise DownloadFailed("\n".join(lines), result)
    return result


def repair_install(
    mirage_data: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    deep: bool = True,
    jobs: int = 4,
    connections: int = 4,
    wait: bool = True,
    quiet: bool = False,
    progress: QuietProgress | None = None,
    options: TransferOptions | None = None,
) -> tuple[list[str], FetchReport | None]:
    """Fetch again the installed files that are damaged or missing.

    Parameters
    ----------
    mirage_data : str or path
        The ``MIRAGE_DATA`` folder.
    mirror : str or path, optional
        Where to fetch from; default: ``$MIRAGE_DATA_MIRROR``, else the source of the last
        download, else the catalog's base URL.
    deep : bool
        Re-hash every file (default); False checks sizes only.

    Returns
    -------
    (list of str, FetchReport or None)
        The collection files found damaged, and how fetching them went.
    """
    mirage_data = Path(mirage_data)
    progress = progress or make_progress(quiet)
    catalog = remembered_catalog(mirage_data)
    with run_lock(mirage_data, wait=wait, progress=progress):
        damaged = files_to_repair(mirage_data, deep=deep, workers=jobs, progress=progress)
        if not damaged:
            return [], None
        known = [rp for rp in damaged if rp in catalog]
        if mirror is None:
            mirror = os.environ.get(MIRROR_ENV) or remembered_base(mirage_data)
        base = resolve_base(mirror, catalog)
        options = replace(options or TransferOptions(), jobs=jobs, connections=connections)
        fetcher = Fetcher(
            mirage_data, base, Inventory.load(mirage_data), options, progress, catalog_version=catalog.version
        )
        report = fetcher.run([catalog.get(rp) for rp in known])
    return damaged, report
