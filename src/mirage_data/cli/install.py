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
