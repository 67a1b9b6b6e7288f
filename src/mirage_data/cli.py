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
@click.argument("detector")
@click.option("-i", "--instrument", help="nircam, niriss or fgs (found from DETECTOR when left out).")
@click.option("--mirage-data", "mirage_data", help="The MIRAGE_DATA folder (default: $MIRAGE_DATA, else here).")
@_user_errors
def locate(detector: str, instrument: str | None, mirage_data: str | None) -> None:
    """Show the darks, PSF libraries and cosmic-ray libraries Mirage would use for DETECTOR
    (A1..B5, NIS, GUIDER1, GUIDER2; CRDS names like NRCALONG work too)."""
    from .catalog import DETECTORS
    from .layout import find_cosmic_ray_libraries, find_darks, find_psf_libraries

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


# --- linearize: raw darks -> linearized darks (mirage_data.dark_linearization) --- begin ---
@main.command("linearize")
@click.argument("raw", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--all", "all_darks", is_flag=True, help="Linearize every raw dark of MIRAGE_DATA into darks/linearized.")
@click.option(
    "--mirage-data",
    envvar="MIRAGE_DATA",
    type=click.Path(file_okay=False),
    help="MIRAGE_DATA folder for --all [env: MIRAGE_DATA].",
)
@click.option("--mask", type=click.Path(dir_okay=False), help="MASK reference file.")
@click.option("--saturation", type=click.Path(dir_okay=False), help="SATURATION reference file.")
@click.option("--superbias", type=click.Path(dir_okay=False), help="SUPERBIAS reference file.")
@click.option("--linearity", type=click.Path(dir_okay=False), help="LINEARITY reference file.")
@click.option(
    "--calibration-dir",
    type=click.Path(file_okay=False),
    help="Folder of JWST reference files, matched to each dark by REFTYPE and DETECTOR.",
)
@click.option("--no-crds", is_flag=True, help="Never ask CRDS for reference files that were not given.")
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="Output file (one RAW) or folder (default: the collection's name, beside RAW).",
)
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Files at once with --all.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--include-dq", is_flag=True, help="Also write PIXELDQ and GROUPDQ.")
@click.option("-q", "--quiet", is_flag=True)
def linearize(raw, all_darks, mirage_data, mask, saturation, superbias, linearity, calibration_dir, no_crds,
              output, jobs, overwrite, include_dq, quiet) -> None:
    """Linearize raw darks (RAW.fits ...) as the JWST pipeline would, without it.

    Runs dq_init, saturation, superbias, refpix and linearity with the given JWST reference
    files (else those of --calibration-dir, else CRDS) and writes Mirage's linearized dark
    (SCI, SBANDREFPIX, ZEROFRAME, ZEROSBANDREFPIX). Outputs appear only when complete.
    """
    import time

    from .calibration_files import CalibrationDirectory, CalibrationError
    from .dark_linearization import DarkFormatError, default_output_name, linearize_all, linearize_dark

    given = dict(mask=mask, saturation=saturation, superbias=superbias, linearity=linearity)
    try:
        if all_darks:
            if raw or output:
                _fail("--all takes no RAW files and no -o (outputs go to darks/linearized)")
            if any(given.values()):
                _fail("--all chooses reference files per detector: use --calibration-dir (or CRDS), not --mask etc.")

            def show(event) -> None:
                if quiet and event.kind != "failed":
                    return
                where = f"[{event.index}/{event.total}]"
                if event.kind == "start":
                    click.echo(f"{where} linearizing {event.raw.name}")
                elif event.kind == "done":
                    click.echo(f"{where} done {event.output} ({event.seconds:.1f} s)")
                elif event.kind == "skipped":
                    click.echo(f"{where} exists, skipped {event.output}")
                else:
                    click.echo(f"{where} FAILED {event.raw}: {event.error}", err=True)

            summary = linearize_all(
                mirage_data, calibration_dir=calibration_dir, use_crds=not no_crds, jobs=jobs,
                overwrite=overwrite, include_dq=include_dq, progress=show,
            )
            click.echo(
                f"{len(summary.done)} linearized, {len(summary.skipped)} already there, {len(summary.failed)} failed"
            )
            if summary.failed:
                sys.exit(1)
            return
        if not raw:
            _fail("give RAW.fits files to linearize, or --all")
        out_dir = None
        if output is not None and (len(raw) > 1 or Path(output).is_dir()):
            out_dir = Path(output)
            out_dir.mkdir(parents=True, exist_ok=True)
        directory = CalibrationDirectory(calibration_dir) if calibration_dir else None
        for path in raw:
            if out_dir is not None:
                target = out_dir / default_output_name(path)
            elif output is not None:
                target = Path(output)
            else:
                target = Path(path).parent / default_output_name(path)
            t0 = time.perf_counter()
            linearize_dark(
                path, target, calibration_dir=directory, use_crds=not no_crds, overwrite=overwrite,
                include_dq=include_dq, **given,
            )
            if not quiet:
                click.echo(f"{path} -> {target} ({time.perf_counter() - t0:.1f} s)")
    except (DarkFormatError, CalibrationError, FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was left", 130)


# --- linearize --- end ---
