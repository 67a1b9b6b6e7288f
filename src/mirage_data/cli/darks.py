"""Commands that prepare darks: ``linearize``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .main import _fail, cluster_options, main


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
@cluster_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--include-dq", is_flag=True, help="Also write PIXELDQ and GROUPDQ.")
@click.option("-q", "--quiet", is_flag=True)
def linearize(
    raw,
    all_darks,
    mirage_data,
    mask,
    saturation,
    superbias,
    linearity,
    calibration_dir,
    no_crds,
    output,
    jobs,
    scheduler,
    workers,
    threads_per_worker,
    overwrite,
    include_dq,
    quiet,
) -> None:
    """Linearize raw darks (RAW.fits ...) as the JWST pipeline would, without it.

    Runs dq_init, saturation, superbias, refpix and linearity with the given JWST reference
    files (else those of --calibration-dir, else CRDS) and writes Mirage's linearized dark
    (SCI, SBANDREFPIX, ZEROFRAME, ZEROSBANDREFPIX). Outputs appear only when complete.
    """
    import time

    from mirage_data.batch.executors import BatchSetupError
    from mirage_data.calibration.reference_files import CalibrationDirectory, CalibrationError
    from mirage_data.darks.batch import default_output_name, linearize_all
    from mirage_data.darks.linearize import DarkFormatError, linearize_dark

    given = dict(mask=mask, saturation=saturation, superbias=superbias, linearity=linearity)
    try:
        if all_darks:
            if raw or output:
                _fail("--all takes no RAW files and no -o (outputs go to darks/linearized)")
            if any(given.values()):
                _fail("--all chooses reference files per detector: use --calibration-dir (or CRDS), not --mask etc.")

            if (scheduler or workers) and jobs:
                _fail("--jobs is for local worker processes; with --scheduler or --workers the cluster sets the pace")

            def failures(event) -> None:  # the display shows everything else
                if quiet and event.kind == "failed":
                    click.echo(f"[{event.index}/{event.total}] FAILED {event.raw}: {event.error}", err=True)

            summary = linearize_all(
                mirage_data,
                calibration_dir=calibration_dir,
                use_crds=not no_crds,
                jobs=jobs,
                scheduler=scheduler,
                workers=workers,
                threads_per_worker=threads_per_worker,
                overwrite=overwrite,
                include_dq=include_dq,
                progress=failures,
                display=not quiet,
            )
            if summary.tasks is not None and not quiet:
                click.echo("per file:")
                for line in summary.tasks.table()[:-1]:
                    click.echo(f"  {line}")
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
                path,
                target,
                calibration_dir=directory,
                use_crds=not no_crds,
                overwrite=overwrite,
                include_dq=include_dq,
                **given,
            )
            if not quiet:
                click.echo(f"{path} -> {target} ({time.perf_counter() - t0:.1f} s)")
    except (DarkFormatError, CalibrationError, BatchSetupError, FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was left", 130)
