"""Commands that fetch: ``plan``, ``download``, ``repair`` and the offline ``demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mirage_data.collection.selection import Selection
from mirage_data.download.errors import NotEnoughSpace
from mirage_data.install.upkeep import find_mirage_data
from mirage_data.progress import make_progress

from .main import _print_export, _transfer, _user_errors, main, selection_options, transfer_options


@main.command()
@click.argument("dest", default=".", type=click.Path(file_okay=False))
@selection_options
@transfer_options
@click.option("--force", is_flag=True, help="Go ahead even if the selection looks too large for the free space.")
@click.option("--dry-run", is_flag=True, help="Show the plan, fetch nothing.")
@click.option(
    "--keep-archives", is_flag=True, help="Keep the fetched .gz/.tar.gz files (in mirage_data/.mirage-data/archives)."
)
@click.option("--link", is_flag=True, help="From a local mirror, link to uncompressed files instead of copying.")
@_user_errors
def download(dest: str, **kw) -> None:
    """Download the reference files into DEST/mirage_data (default DEST: here)."""
    from mirage_data.download.api import download_reffiles

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
        quiet=True,  # the summary and export lines are printed here, also with -q
        **kw,
    )
    _print_export(result.mirage_data, result.summary())


def _show_plan(dest: str, kw: dict) -> None:
    from mirage_data.collection.catalog import load_catalog
    from mirage_data.download.plan import make_plan

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
    catalog = load_catalog(kw.get("catalog"))
    # The source tells exact sizes where it can (a mirror folder's files, recorded downloads).
    base = kw.get("mirror") or os.environ.get("MIRAGE_DATA_MIRROR") or catalog.base_url
    plan = make_plan(dest, selection, catalog, base=base)
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
    _show_plan(dest, kw)


@main.command()
@click.argument("mirage_data", required=False)
@click.option(
    "--mirror", envvar="MIRAGE_DATA_MIRROR", help="Fetch from here (default: where the last download came from)."
)
@click.option("--quick", is_flag=True, help="Check sizes only instead of re-hashing.")
@transfer_options
@_user_errors
def repair(mirage_data: str | None, mirror: str | None, quick: bool, **kw) -> None:
    """Fetch again the installed files that are damaged or missing."""
    from mirage_data.download.api import repair_install

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
    from mirage_data.demo import run_demo

    click.echo(f"making a sample collection in {Path(folder).absolute() / 'sample_collection'} ...")
    result = run_demo(folder, quiet=quiet)
    _print_export(result.mirage_data, result.summary())
