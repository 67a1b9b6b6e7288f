"""Commands that look after an install: ``env``, ``status``, ``verify``, ``locate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mirage_data.install.upkeep import find_mirage_data, installed_status, verify_install
from mirage_data.progress import make_progress
from mirage_data.units import format_size

from .main import _print_export, _user_errors, main


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
    from mirage_data.install.inventory import Inventory

    return [f for r in Inventory.load(folder).records.values() for f in r.files]


@main.command()
@click.argument("mirage_data", required=False)
@_user_errors
def status(mirage_data: str | None) -> None:
    """Show what is installed (and of it, adopted), modified, untracked or missing, per
    instrument and group (quick: sizes). Writes nothing."""
    from mirage_data.install.inventory import Inventory

    folder = find_mirage_data(mirage_data)
    inventory = Inventory.load(folder)
    rows = installed_status(folder, inventory=inventory)
    click.echo(f"MIRAGE_DATA: {folder}")
    if inventory.damage:
        click.echo(f"note: {inventory.damage}; showing what the layout holds")
    header = f"  {'instrument':<10} {'group':<22} {'installed':>9} {'adopted':>7} {'modified':>8} {'untracked':>9}"
    click.echo(header + f" {'missing':>7}")
    for r in rows:
        click.echo(
            f"  {r.instrument:<10} {r.title:<22} {r.installed:>9} {r.adopted:>7} {len(r.modified):>8} "
            f"{len(r.untracked):>9} {r.missing:>7}"
        )
    modified = [rp for r in rows for rp in r.modified]
    for rp in modified:
        click.echo(f"modified: {rp}")
    untracked = [rp for r in rows for rp in r.untracked]
    for rp in untracked:
        click.echo(f"untracked: {rp}")
    if modified:
        click.echo("Run `mirage-data repair` to restore the modified files.")
    if untracked or inventory.damage:
        if _writable(folder):
            click.echo("Run `mirage-data adopt` to check and record the untracked files (nothing is fetched).")
        else:
            click.echo(f"{folder} is read-only for you: nothing was recorded there.")


def _writable(folder: Path) -> bool:
    import os

    from mirage_data.install.state import state_dir

    state = state_dir(folder)
    return os.access(state if state.is_dir() else folder, os.W_OK)


@main.command()
@click.argument("mirage_data", required=False)
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="Files hashed at once.")
@click.option("-q", "--quiet", is_flag=True)
@_user_errors
def verify(mirage_data: str | None, jobs: int, quiet: bool) -> None:
    """Re-hash every installed file; report damaged or missing ones (exit status 1 if any)."""
    from mirage_data.install.inventory import Inventory
    from mirage_data.install.upkeep import record_verification

    folder = find_mirage_data(mirage_data)
    problems = verify_install(folder, workers=jobs, progress=make_progress(quiet))
    for rp, issues in sorted(problems.items()):
        for path, problem in issues:
            click.echo(f"{problem}: {path} (from {rp})")
    inventory = Inventory.load(folder)
    untracked = [rp for r in installed_status(folder, inventory=inventory) for rp in r.untracked]
    not_recorded = record_verification(folder, problems)
    if not_recorded is not None:
        click.echo(f"could not record the results in {not_recorded} (read-only); nothing was written there")
    if inventory.damage:
        click.echo(f"note: {inventory.damage}")
    if untracked:
        click.echo(
            f"{len(untracked)} collection files are in the tree but not recorded (not verified): "
            "`mirage-data adopt` checks and records them"
        )
    if problems:
        click.echo(f"{len(problems)} collection files damaged or missing; `mirage-data repair` restores them.")
        sys.exit(1)
    click.echo(f"all recorded files verified in {folder}")


@main.command()
@click.argument("mirage_data", required=False)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Catalog file to write (TSV).")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="Files hashed at once.")
@click.option("-q", "--quiet", is_flag=True)
@_user_errors
def catalog(mirage_data: str | None, output: str, jobs: int, quiet: bool) -> None:
    """Write a catalog pinned to a verified install: exact sizes and sha256 of what is installed.

    Other installs given it with ``--catalog`` refuse any file that differs."""
    from mirage_data.install.upkeep import pin_catalog

    folder = find_mirage_data(mirage_data)
    pinned, n = pin_catalog(folder, workers=jobs, progress=make_progress(quiet))
    pinned.write(output)
    click.echo(f"{output}: {len(pinned)} collection files, {n} pinned from the verified install in {folder}")


@main.command()
@click.argument("mirage_data", required=False)
@click.option(
    "--reclaim",
    is_flag=True,
    help="Then remove the leftover .fits.gz and tarball copies whose installed files verify.",
)
@click.option("--catalog", type=click.Path(dir_okay=False), help="A catalog file to use instead of the packaged one.")
@click.option("--no-wait", is_flag=True, help="Fail at once if another run is using the folder.")
@_user_errors
def adopt(mirage_data: str | None, reclaim: bool, catalog: str | None, no_wait: bool) -> None:
    """Check and record the reference files already in MIRAGE_DATA (e.g. from Mirage's own
    downloader or a colleague's copy), so that downloads fetch only what is missing or wrong.

    A leftover .fits.gz beside a missing or wrong .fits is decompressed here, not fetched."""
    from mirage_data.collection.catalog import load_catalog
    from mirage_data.download.api import run_lock
    from mirage_data.install.adopt import adopt_tree, reclaim_leftovers
    from mirage_data.install.inventory import Inventory
    from mirage_data.install.state import remove_stale_leftovers
    from mirage_data.install.upkeep import remember_source, remembered_base, remembered_catalog

    folder = find_mirage_data(mirage_data)
    if not _writable(folder):
        raise PermissionError(13, "cannot record anything in a read-only tree", str(folder))
    cat = load_catalog(catalog) if catalog else remembered_catalog(folder)
    with run_lock(folder, wait=not no_wait):
        if catalog:  # status and repair then use it too
            remember_source(folder, remembered_base(folder) or cat.base_url, cat)
        freed = remove_stale_leftovers(folder)
        if freed:
            click.echo(f"removed {format_size(freed)} left by interrupted runs")
        inventory = Inventory.load(folder)
        if inventory.damage:
            click.echo(f"note: {inventory.damage}; rebuilding it from the files in the layout")
        report = adopt_tree(
            folder,
            inventory,
            cat.entries,
            catalog_version=cat.version,
            message=lambda line: click.echo(line),
        )
        if inventory.damage:
            inventory.save()
        click.echo(f"{folder}: {report.summary()}")
        if reclaim:
            removed = reclaim_leftovers(folder, inventory, cat.entries)
            for path, _ in removed:
                click.echo(f"removed {path}")
            click.echo(f"reclaimed {format_size(sum(n for _, n in removed))} in {len(removed)} leftover copies")
    if report.refused:
        click.echo("`mirage-data download` fetches the refused files.")
        sys.exit(1)


@main.command()
@click.argument("detector")
@click.option("-i", "--instrument", help="nircam, niriss or fgs (found from DETECTOR when left out).")
@click.option("--mirage-data", "mirage_data", help="The MIRAGE_DATA folder (default: $MIRAGE_DATA, else here).")
@_user_errors
def locate(detector: str, instrument: str | None, mirage_data: str | None) -> None:
    """Show the darks, PSF libraries and cosmic-ray libraries Mirage would use for DETECTOR
    (A1..B5, NIS, GUIDER1, GUIDER2; CRDS names like NRCALONG work too)."""
    from mirage_data.collection.catalog import DETECTORS
    from mirage_data.collection.layout import find_cosmic_ray_libraries, find_darks, find_psf_libraries

    folder = find_mirage_data(mirage_data)
    name = detector.strip().upper().removeprefix("NRC").replace("LONG", "5")
    matches = [i for i in DETECTORS if name in DETECTORS[i] and (instrument is None or i == instrument.lower())]
    if not matches:
        known = ", ".join(d for i in DETECTORS for d in DETECTORS[i])
        raise ValueError(f"unknown detector {detector!r}; accepted: {known}")
    inst = matches[0]
    click.echo(f"{inst} {name} in {folder}")
    rows = [
        ("linearized darks", find_darks(folder, inst, name, "linearized")),
        ("raw darks", find_darks(folder, inst, name, "raw")),
        ("gridded PSF libraries", find_psf_libraries(folder, inst, name)),
        ("cosmic-ray libraries (SUNMIN)", find_cosmic_ray_libraries(folder, inst, name, "SUNMIN")),
        ("cosmic-ray libraries (SUNMAX)", find_cosmic_ray_libraries(folder, inst, name, "SUNMAX")),
        ("cosmic-ray libraries (FLARES)", find_cosmic_ray_libraries(folder, inst, name, "FLARES")),
    ]
    for title, paths in rows:
        click.echo(f"{title}: {len(paths)}")
        for p in paths:
            click.echo(f"  {p.relative_to(folder)}")
