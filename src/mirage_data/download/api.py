"""The public entry point: `download_reffiles`, Mirage's call, made fast, resumable and verified.

Examples
--------
Mirage's own call keeps working::

    from mirage_data import download_reffiles
    download_reffiles("/data/reffiles", instrument="all", psf_version="gridded", dark_type="linearized")

Fetch one linearized dark per NIRCam detector from a mirror on a shared disk::

    download_reffiles("/data/reffiles", instrument="nircam", single_dark=True,
                      mirror="/shared/mirage_reference_files")

From an HTTP mirror (here the sample collection the test suite serves on loopback at
``server_url``, with its own ``sample_catalog``); a second run finds everything in place:

>>> result = download_reffiles("reffiles", instrument="fgs", dark_type="raw", skip_psfs=True,
...                            mirror=server_url, catalog=sample_catalog, quiet=True)
>>> sorted(path.name for path in (result.mirage_data / "fgs" / "darks" / "raw").rglob("*.fits"))[:1]
['29722_1x88_FGSF03512-D-NR-G2-5339214947_1_498_SE_2015-12-05T22h27m19_dms_uncal.fits']
>>> again = download_reffiles("reffiles", instrument="fgs", dark_type="raw", skip_psfs=True,
...                           mirror=server_url, catalog=sample_catalog, quiet=True)
>>> again.report is None  # nothing was missing: nothing fetched
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock, Timeout

from mirage_data.collection.catalog import Catalog, load_catalog
from mirage_data.collection.layout import export_lines, mirage_data_path
from mirage_data.collection.selection import Selection
from mirage_data.install.adopt import adopt_tree
from mirage_data.install.inventory import ADOPTED, LINKED, MADE, Inventory
from mirage_data.install.state import lock_path, remove_stale_leftovers, stale_leftovers
from mirage_data.install.upkeep import (
    NotAnInstall,
    files_to_repair,
    remember_source,
    remembered_base,
    remembered_catalog,
)
from mirage_data.progress import QuietProgress, make_progress
from mirage_data.units import format_duration, format_size

from .errors import DownloadFailed, DownloadFolderError, LockedError, NotEnoughSpace  # noqa: F401 (public here)
from .fetcher import Fetcher, FetchReport, local_mirror_path
from .plan import Plan, make_plan
from .transfer import TransferOptions

MIRROR_ENV = "MIRAGE_DATA_MIRROR"


@dataclass(repr=False)
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

    def __repr__(self) -> str:
        n = len(self.plan.files)
        if self.report is None:
            return f"DownloadResult(mirage_data='{self.mirage_data}', files={n}, fetched=0)"
        ok = sum(r.ok for r in self.report.results)
        return (
            f"DownloadResult(mirage_data='{self.mirage_data}', files={n}, installed={ok}, "
            f"already={n - len(self.report.results)}, failed={len(self.report.failed)}, "
            f"fetched='{format_size(self.report.bytes_fetched)}')"
        )

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


def check_mirror(base: str) -> str:
    """Check a mirror before anything runs; raise `ValueError` (or `FileNotFoundError`) with one
    line saying what is wrong and what is accepted.

    >>> check_mirror("ftp://example.org/m")
    Traceback (most recent call last):
    ...
    ValueError: unsupported mirror 'ftp://example.org/m': give an http(s):// URL, a file:// URL or a folder
    """
    accepted = "give an http(s):// URL, a file:// URL or a folder"
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"the mirror is empty; {accepted}")
    parsed = urlparse(base)
    if parsed.scheme in ("http", "https") and not parsed.hostname:
        raise ValueError(f"the mirror URL {base!r} has no host; {accepted}")
    local = local_mirror_path(base)  # raises for other schemes
    if local is not None:
        if local.is_file():
            raise ValueError(f"the mirror {local} is a file, not a folder; {accepted}")
        if not local.is_dir():
            raise FileNotFoundError(f"mirror folder {local} does not exist ({accepted})")
    return base


def resolve_base(mirror: str | os.PathLike | None, catalog: Catalog) -> str:
    """Where to fetch from: *mirror*, else ``$MIRAGE_DATA_MIRROR``, else the catalog's base URL."""
    if mirror is not None:
        base = os.fspath(mirror)
    else:
        base = os.environ.get(MIRROR_ENV)
        base = base if base is not None else catalog.base_url
    return check_mirror(base)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")


def prepare_folder(download_path: str | os.PathLike) -> Path:
    """Create ``<download_path>/mirage_data`` if needed and check it is writable (raises
    `DownloadFolderError` with one line naming the folder and what to do)."""
    mirage_data = mirage_data_path(download_path)
    for path in (mirage_data.parent, mirage_data):
        if path.exists() and not path.is_dir():
            raise DownloadFolderError(f"{path} is a file, not a folder; move it aside or give another download_path")
    try:
        mirage_data.mkdir(parents=True, exist_ok=True)
        probe = mirage_data / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DownloadFolderError(
            f"cannot write to {mirage_data}: {exc.strerror or exc}; make it writable "
            "(chmod/chown, or ask its owner) or give a download_path in a folder you can write to"
        ) from None
    return mirage_data


def _clean_and_adopt(mirage_data: Path, inventory: Inventory, entries, catalog: Catalog, progress) -> None:
    """Under the lock, before planning: remove what dead runs left, and check and record the
    files already in the tree that the inventory does not know (nothing is fetched for them)."""
    freed = remove_stale_leftovers(mirage_data)
    if freed:
        progress.message(f"removed {format_size(freed)} left by interrupted runs")
    if inventory.damage:
        progress.message(f"{inventory.damage}; rebuilding it from the files in {mirage_data}")
    report = adopt_tree(
        mirage_data,
        inventory,
        entries,
        catalog_entries=catalog.entries,
        catalog_version=catalog.version,
        message=progress.message,
    )
    if report.adopted or report.unpacked or report.refused:
        progress.message(f"files already in {mirage_data}: {report.summary()}")
    if inventory.damage:
        inventory.save()


def announce(result: DownloadResult) -> None:
    """Print the summary and the lines that point Mirage at the files (as Mirage's downloader ends)."""
    print(result.summary())
    print("Point Mirage at the files with (sh/bash/zsh, then csh/tcsh):")
    for line in result.export_lines:
        print(f"  {line}")


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
    jobs: int | None = None,
    connections: int | None = None,
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
    installed files are not fetched again; interrupted downloads resume. Files already in the
    tree that mirage-data has no record of (a tree made by Mirage's own downloader, a copy, a
    lost or damaged inventory) are checked and recorded instead of fetched, and a leftover
    ``.fits.gz`` beside a missing ``.fits`` is decompressed here (`install.adopt`).

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
    jobs, connections : int, optional
        Files fetched at once, and connections per large file (default: those of *options*,
        else 4 each).
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
        No progress output, and no closing summary with the ``export MIRAGE_DATA=...`` lines
        (printed otherwise, as Mirage's downloader does).
    progress : QuietProgress, optional
        A progress reporter (default: bars on a terminal, log lines otherwise).
    options : TransferOptions, optional
        Timeouts, retries and so on (``jobs``/``connections``, when given, override its counts).
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
    ValueError
        A boolean option given anything but True or False (e.g. ``single_dark='no'``), or a
        mirror that is empty, has no host, another scheme than http/https/file, or is a file.
    NotEnoughSpace
        The selection will not fit (and ``force`` is False). Staging left by runs that died is
        removed first, and the space it held counts as free.
    DownloadFolderError
        ``<download_path>/mirage_data`` cannot be made or written (a file in its place, a
        read-only folder); checked before anything is fetched.
    LockedError, DownloadFailed
    """
    for name, value in (
        ("skip_darks", skip_darks),
        ("single_dark", single_dark),
        ("skip_cosmic_rays", skip_cosmic_rays),
        ("skip_psfs", skip_psfs),
        ("skip_soss", skip_soss),
        ("force", force),
        ("dry_run", dry_run),
        ("keep_archives", keep_archives),
        ("link", link),
        ("wait", wait),
        ("quiet", quiet),
        ("raise_on_failure", raise_on_failure),
    ):
        _check_bool(name, value)
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
    options = _with_counts(options, jobs, connections)
    progress = progress or make_progress(quiet)

    if dry_run:
        plan = make_plan(download_path, selection, catalog, base=base)
        if plan.free_bytes is not None:  # what a run would reclaim first
            plan.free_bytes += sum(size for _, size in stale_leftovers(plan.mirage_data))
        return DownloadResult(plan.mirage_data, plan, None)

    mirage_data = prepare_folder(download_path)
    with run_lock(mirage_data, wait=wait, progress=progress):
        inventory = Inventory.load(mirage_data)
        _clean_and_adopt(mirage_data, inventory, selection.files(catalog), catalog, progress)
        plan = make_plan(download_path, selection, catalog, inventory, base=base)
        if not force:
            plan.check_space()
        remember_source(mirage_data, base, catalog)
        todo = _not_made_locally(plan.entries_to_fetch, inventory, progress)
        if not todo:
            result = DownloadResult(mirage_data, plan, None)
            if not quiet:
                announce(result)
            return result
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
        report = fetcher.run(todo, plan.source_sizes)
    result = DownloadResult(mirage_data, plan, report)
    if report.failed and raise_on_failure:
        lines = [f"{len(report.failed)} of {len(report.results)} files failed:"]
        lines += [f"  {r.entry.relative_path}: {r.error}" for r in report.failed]
        lines.append("Installed files are kept; run the same command again to retry the failed ones.")
        raise DownloadFailed("\n".join(lines), result)
    if not quiet:
        announce(result)
    return result


def _not_made_locally(entries: list, inventory: Inventory, progress: QuietProgress) -> list:
    """*entries* without those made locally (e.g. by ``linearize``): a changed or lost file
    made here is made again, never replaced by a download."""
    keep = []
    for entry in entries:
        record = inventory.get(entry.relative_path)
        if record is not None and record.origin == MADE:
            progress.message(f"{entry.install_path} was made locally and has changed; make it again (not downloaded)")
            continue
        keep.append(entry)
    return keep


def _with_counts(options: TransferOptions | None, jobs: int | None, connections: int | None) -> TransferOptions:
    """*options* with the counts given explicitly; a count left out keeps the options' own."""
    options = options or TransferOptions()
    counts = {k: v for k, v in (("jobs", jobs), ("connections", connections)) if v is not None}
    return replace(options, **counts) if counts else options


def repair_install(
    mirage_data: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    deep: bool = True,
    jobs: int | None = None,
    connections: int | None = None,
    wait: bool = True,
    quiet: bool = False,
    progress: QuietProgress | None = None,
    options: TransferOptions | None = None,
) -> tuple[list[str], FetchReport | None]:
    """Restore the installed files that are damaged or missing, each from the same kind of
    source it came from (its provenance in the inventory).

    Downloaded files are fetched again; adopted ones are unpacked again from their leftover
    copy in the tree where it is still there, else fetched; linked ones are linked again to the
    mirror's file. Files made locally (e.g. by ``linearize``) are never replaced by a download:
    they are reported (``report`` lists them as failed, saying to make them again).

    Parameters
    ----------
    mirage_data : str or path
        The ``MIRAGE_DATA`` folder (must exist; nothing is created when it does not).
    mirror : str or path, optional
        Where to fetch from; default: ``$MIRAGE_DATA_MIRROR``, else the source of the last
        download, else the catalog's base URL.
    deep : bool
        Re-hash every file (default); False checks sizes only.

    Returns
    -------
    (list of str, FetchReport or None)
        The collection files found damaged, and how restoring them went.

    Raises
    ------
    NotAnInstall
        *mirage_data* is not a folder.
    """
    _check_bool("deep", deep)
    _check_bool("wait", wait)
    _check_bool("quiet", quiet)
    mirage_data = Path(mirage_data).expanduser().absolute()
    if not mirage_data.is_dir():
        raise NotAnInstall(f"{mirage_data} does not exist; give the MIRAGE_DATA folder to repair")
    progress = progress or make_progress(quiet)
    catalog = remembered_catalog(mirage_data)
    if mirror is not None:
        check_mirror(os.fspath(mirror))
    options = _with_counts(options, jobs, connections)
    with run_lock(mirage_data, wait=wait, progress=progress):
        remove_stale_leftovers(mirage_data)
        damaged = files_to_repair(mirage_data, deep=deep, workers=options.jobs, progress=progress)
        if not damaged:
            return [], None
        inventory = Inventory.load(mirage_data)
        report = FetchReport()
        by_origin: dict[str, list] = {}
        for rp in damaged:
            record = inventory.get(rp)
            origin = record.origin if record is not None else ""
            if origin == MADE or rp not in catalog:
                report.results.append(
                    _not_fetched(rp, catalog, "made locally: make it again (e.g. `mirage-data linearize`)")
                )
                continue
            by_origin.setdefault(origin, []).append(catalog.get(rp))
        adopted = by_origin.pop(ADOPTED, [])
        if adopted:
            # Unpack again from the leftover copy where there is one; fetch the rest.
            for entry in adopted:
                inventory.remove(entry.relative_path)
            done = adopt_tree(
                mirage_data,
                inventory,
                adopted,
                catalog_entries=catalog.entries,
                catalog_version=catalog.version,
                copies_only=True,
            )
            fixed = set(done.adopted) | set(done.unpacked)
            by_origin.setdefault("", []).extend(e for e in adopted if e.relative_path not in fixed)
        if by_origin:
            if mirror is None:
                mirror = os.environ.get(MIRROR_ENV) or remembered_base(mirage_data)
            base = resolve_base(mirror, catalog)
            for origin, entries in by_origin.items():
                fetcher = Fetcher(
                    mirage_data,
                    base,
                    inventory,
                    options,
                    progress,
                    link=origin == LINKED,
                    catalog_version=catalog.version,
                )
                sub = fetcher.run(entries)
                report.results += sub.results
                report.seconds += sub.seconds
    return damaged, report


def _not_fetched(relative_path: str, catalog: Catalog, why: str):
    from mirage_data.collection.catalog import CatalogEntry

    from .fetcher import FileResult

    entry = catalog.get(relative_path) if relative_path in catalog else CatalogEntry("", "", relative_path)
    return FileResult(entry, ok=False, error=why)
