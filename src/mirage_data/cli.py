"""The ``mirage-data`` command: a thin layer over the Python API.

Exit status: 0 success, 1 some files failed or are damaged, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .catalog import CatalogError
from .download import (
    DownloadFailed,
    DownloadFolderError,
    LockedError,
    download_reffiles,
    repair_install,
)
from .layout import export_lines
from .plan import NotEnoughSpace, make_plan
from .progress import make_progress
from .selection import DARK_TYPES, PSF_VERSIONS, Selection, SelectionError
from .transfer import TransferOptions
from .units import format_size
from .upkeep import NotAnInstall, find_mirage_data, installed_status, verify_install


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"mirage-data: {message}", err=True)
    sys.exit(code)


def _user_errors(func):
    """Turn the API's documented errors into one clear line and an exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SelectionError, CatalogError, NotAnInstall, FileNotFoundError) as exc:
            _fail(str(exc))
        except (NotEnoughSpace, DownloadFolderError, LockedError) as exc:
            _fail(str(exc), 1)
        except DownloadFailed as exc:
            _fail(str(exc), 1)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except ValueError as exc:
            _fail(str(exc))

    return wrapper


def selection_options(func):
    """The options that choose files, shared by ``download`` and ``plan``."""
    options = [
        click.option(
            "-i",
            "--instrument",
            default="all",
            show_default=True,
            help="nircam, niriss, fgs, several comma-separated, or all.",
        ),
        click.option(
            "--psf-version",
            default="gridded",
            show_default=True,
            help=f"PSF libraries: {', '.join(PSF_VERSIONS)} (the collection has only gridded ones).",
        ),
        click.option("--dark-type", default="linearized", show_default=True, help=f"{', '.join(DARK_TYPES)}."),
        click.option("--single-dark", is_flag=True, help="One dark per detector (FGS: one per guider)."),
        click.option("--skip-darks", is_flag=True, help="No darks."),
        click.option("--skip-cosmic-rays", is_flag=True, help="No cosmic-ray libraries."),
        click.option("--skip-psfs", is_flag=True, help="No PSF libraries."),
        click.option("--skip-soss", is_flag=True, help="No NIRISS SOSS PSFs."),
        click.option(
            "--mirror",
            envvar="MIRAGE_DATA_MIRROR",
            help="Fetch from this http(s) URL or local/network-share folder instead of STScI "
            "[env: MIRAGE_DATA_MIRROR].",
        ),
        click.option("--catalog", type=click.Path(dir_okay=False), help="A catalog file to use instead of the packaged one."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def transfer_options(func):
    options = [
        click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="Files at once."),
        click.option(
            "-c",
            "--connections",
            default=4,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Connections per large file (servers that accept byte ranges).",
        ),
        click.option("--connect-timeout", default=15.0, show_default=True, type=click.FloatRange(0.1), help="Seconds."),
        click.option(
            "--read-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1), help="Seconds without data before a retry."
        ),
        click.option("--retries", default=6, show_default=True, type=click.IntRange(0, 100), help="Retries of transient failures."),
        click.option("--no-verify-tls", is_flag=True, help="Do not check TLS certificates (not recommended)."),
        click.option("--no-wait", is_flag=True, help="Fail at once if another run is using the folder."),
        click.option("-q", "--quiet", is_flag=True, help="No progress output."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _transfer(kw: dict) -> TransferOptions:
    return TransferOptions(
        connect_timeout=kw.pop("connect_timeout"),
        read_timeout=kw.pop("read_timeout"),
        retries=kw.pop("retries"),
        verify_tls=not kw.pop("no_verify_tls"),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirage-data")
def main() -> None:
    """Get, check and prepare the Mirage JWST reference files.

    Start with `mirage-data plan DEST`, then `mirage-data download DEST`; point Mirage at
    DEST/mirage_data with the export line it prints. `mirage-data demo` runs offline.
    """


def _print_export(mirage_data: Path, summary: str) -> None:
    click.echo(summary)
    click.echo("Point Mirage at the files with (sh/bash/zsh, then csh/tcsh):")
    for line in export_lines(mirage_data):
        click.echo(f"  {line}")


@main.command()
@click.argument("dest", default=".", type=click.Path(file_okay=False))
@selection_options
@transfer_options
@click.option("--force", is_flag=True, help="Go ahead even if the selection looks too large for the free space.")
@click.option("--dry-run", is_flag=True, help="Show the plan, fetch nothing.")
@click.option("--keep-archives", is_flag=True, help="Keep the fetched .gz/.tar.gz files (in mirage_data/.mirage-data/archives).")
@click.option("--link", is_flag=True, help="From a local mirror, link to uncompressed files instead of copying.")
@_user_errors
def download(dest: str, **kw) -> None:
    """Download the reference files into DEST/mirage_data (default DEST: here)."""
    options = _transfer(kw)
    if kw.pop("dry_run"):
        _show_plan(dest, kw)
        return
    progress = make_progress(kw.pop("quiet"))
    result = download_reffiles(
        dest,
        kw.pop("instrument"),
        kw.pop("psf_version"),
        kw.pop("dark_type"),
        skip_darks=kw.pop("skip_darks"),
        single_dark=kw.pop("single_dark"),
        skip_cosmic_rays=kw.pop("skip_cosmic_rays"),
        skip_psfs=kw.pop("skip_psfs"),
        skip_soss=kw.pop("skip_soss"),
        wait=not kw.pop("no_wait"),
        progress=progress,
        options=options,
        **kw,
    )
    _print_export(result.mirage_data, result.summary())


def _show_plan(dest: str, kw: dict) -> None:
    from .catalog import load_catalog

    selection = Selection(
        instrument=kw["instrument"],
        psf_version=kw["psf_version"],
        dark_type=kw["dark_type"],
        single_dark=kw["single_dark"],
        skip_darks=kw["skip_darks"],
        skip_cosmic_rays=kw["skip_cosmic_rays"],
        skip_psfs=kw["skip_psfs"],
        skip_soss=kw["skip_soss"],
    )
    plan = make_plan(dest, selection, load_catalog(kw.get("catalog")))
    click.echo(plan.describe())
    try:
        plan.check_space()
    except NotEnoughSpace as exc:
        click.echo(f"Warning: {exc}")


@main.command()
@click.argument("dest", default=".", type=click.Path(file_okay=False))
@selection_options
@_user_errors
def plan(dest: str, **kw) -> None:
    """List the files a download into DEST/mirage_data would fetch, with sizes and free space."""
    kw.pop("mirror", None)
    _show_plan(dest, kw)


@main.command()
@click.argument("mirage_data", required=False)
@_user_errors
def env(mirage_data: str | None) -> None:
    """Print the lines that point Mirage at an installed MIRAGE_DATA folder."""
    folder = find_mirage_data(mirage_data)
    rows = installed_status(folder)
    installed = sum(r.installed for r in rows)
    size = sum(f.size for f in _inventory_files(folder))
    _print_export(folder, f"{folder}: {installed} collection files installed, {format_size(size)}")


def _inventory_files(folder: Path):
    from .inventory import Inventory

    return [f for r in Inventory.load(folder).records.values() for f in r.files]


@main.command()
@click.argument("mirage_data", required=False)
@_user_errors
def status(mirage_data: str | None) -> None:
    """Show what is installed, missing or modified, per instrument and group (quick: sizes)."""
    folder = find_mirage_data(mirage_data)
    rows = installed_status(folder)
    click.echo(f"MIRAGE_DATA: {folder}")
    click.echo(f"  {'instrument':<10} {'group':<22} {'installed':>9} {'modified':>8} {'missing':>7}")
    for r in rows:
        click.echo(f"  {r.instrument:<10} {r.title:<22} {r.installed:>9} {len(r.modified):>8} {r.missing:>7}")
    modified = [rp for r in rows for rp in r.modified]
    for rp in modified:
        click.echo(f"modified: {rp}")
    if modified:
        click.echo("Run `mirage-data repair` to fetch the modified files again.")


@main.command()
@click.argument("mirage_data", required=False)
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="Files hashed at once.")
@click.option("-q", "--quiet", is_flag=True)
@_user_errors
def verify(mirage_data: str | None, jobs: int, quiet: bool) -> None:
    """Re-hash every installed file; report damaged or missing ones (exit status 1 if any)."""
    folder = find_mirage_data(mirage_data)
    problems = verify_install(folder, workers=jobs, progress=make_progress(quiet))
    for rp, issues in sorted(problems.items()):
        for path, problem in issues:
            click.echo(f"{problem}: {path} (from {rp})")
    if problems:
        click.echo(f"{len(problems)} collection files damaged or missing; `mirage-data repair` fetches them again.")
        sys.exit(1)
    click.echo(f"all installed files verified in {folder}")


@main.command()
@click.argument("mirage_data", required=False)
@click.option("--mirror", envvar="MIRAGE_DATA_MIRROR", help="Fetch from here (default: where the last download came from).")
@click.option("--quick", is_flag=True, help="Check sizes only instead of re-hashing.")
@transfer_options
@_user_errors
def repair(mirage_data: str | None, mirror: str | None, quick: bool, **kw) -> None:
    """Fetch again the installed files that are damaged or missing."""
    options = _transfer(kw)
    folder = find_mirage_data(mirage_data)
    damaged, report = repair_install(
        folder,
        mirror=mirror,
        deep=not quick,
        jobs=kw["jobs"],
        connections=kw["connections"],
        wait=not kw["no_wait"],
        quiet=kw["quiet"],
        options=options,
    )
    if not damaged:
        click.echo("nothing to repair")
        return
    failed = report.failed if report else []
    click.echo(f"{len(damaged)} damaged files, {len(damaged) - len(failed)} repaired, {len(failed)} failed")
    for r in failed:
        click.echo(f"  {r.entry.relative_path}: {r.error}")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("folder", default="mirage-data-demo", type=click.Path(file_okay=False))
@click.option("-q", "--quiet", is_flag=True)
@_user_errors
def demo(folder: str, quiet: bool) -> None:
    """Offline demo: make a sample collection in FOLDER, serve it on loopback, download it."""
    from .demo import run_demo

    click.echo(f"making a sample collection in {Path(folder).absolute() / 'sample_collection'} ...")
    result = run_demo(folder, quiet=quiet)
    _print_export(result.mirage_data, result.summary())
