"""The ``prepare`` command: what a set of Mirage input yaml files needs, fetched and resolved."""

from __future__ import annotations

import sys

import click

from mirage_data.progress import make_progress

from .main import _transfer, _user_errors, cluster_options, main, transfer_options


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--mirage-data",
    envvar="MIRAGE_DATA",
    required=True,
    type=click.Path(file_okay=False),
    help="MIRAGE_DATA folder (may be a read-only shared copy) [env: MIRAGE_DATA].",
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for the resolved yamls.")
@click.option(
    "--fetch-into",
    type=click.Path(file_okay=False),
    help="Writable folder for missing collection files (default: MIRAGE_DATA when writable).",
)
@click.option("--dry-run", is_flag=True, help="Print the bill and the problems; fetch and write nothing.")
@click.option(
    "--mirror",
    envvar="MIRAGE_DATA_MIRROR",
    help="Fetch collection files from this http(s) URL or folder [env: MIRAGE_DATA_MIRROR].",
)
@click.option("--catalog", type=click.Path(dir_okay=False), help="A catalog file to use instead of the packaged one.")
@click.option("--crds-path", type=click.Path(file_okay=False), help="Writable CRDS cache [default: $CRDS_PATH].")
@click.option("--crds-context", help="CRDS context to pin (jwst_NNNN.pmap) [default: $CRDS_CONTEXT, else resolved].")
@click.option(
    "--crds-from",
    type=click.Path(exists=True, file_okay=False),
    help="A read-only CRDS cache to copy rules and references from instead of downloading.",
)
@click.option("--crds-server", help="CRDS server URL [default: $CRDS_SERVER_URL, else the JWST server].")
@click.option("--crds-date", help="DATE-OBS for CRDS queries, YYYY-MM-DD [default: recorded in OUT, else today].")
@click.option("--link", is_flag=True, help="Hard-link files from --crds-from instead of copying (same file system).")
@click.option(
    "--darks",
    is_flag=True,
    help="Also write each exposure's prepared dark (Mirage's dark_prep product) for override_dark.",
)
@click.option("--dark-seed", type=int, help="Seed of the choice of darks for nint > 1 [default: per exposure].")
@cluster_options
@transfer_options
@_user_errors
def prepare(inputs, **kw) -> None:
    """Prepare exactly the reference files that Mirage yaml files (INPUTS: files or folders) need.

    Writes one resolved yaml per exposure into OUT (CRDS entries replaced by full paths, inverted
    IPC kernels precomputed) and prints the environment lines for running Mirage offline.
    """
    from mirage_data.exposures.prepare import prepare as run

    options = _transfer(kw)
    quiet = kw.pop("quiet")
    darks, dark_seed = kw.pop("darks"), kw.pop("dark_seed")
    cluster = {k: kw.pop(k) for k in ("scheduler", "workers", "threads_per_worker")}
    if (cluster["scheduler"] or cluster["workers"]) and not darks:
        raise click.UsageError("--scheduler and --workers run the prepared darks (--darks) as tasks; add --darks")
    from mirage_data.batch.executors import check_executor_options

    check_executor_options(**cluster)
    report = run(
        list(inputs),
        kw.pop("mirage_data"),
        kw.pop("out"),
        fetch_into=kw.pop("fetch_into"),
        dry_run=kw.pop("dry_run"),
        mirror=kw.pop("mirror"),
        catalog=kw.pop("catalog"),
        crds_path=kw.pop("crds_path"),
        crds_context=kw.pop("crds_context"),
        crds_from=kw.pop("crds_from"),
        crds_server=kw.pop("crds_server"),
        crds_date=kw.pop("crds_date"),
        link=kw.pop("link"),
        jobs=kw.pop("jobs"),
        connections=kw.pop("connections"),
        wait=not kw.pop("no_wait"),
        progress=make_progress(quiet),
        options=options,
    )
    text = report.describe()
    status = report.exit_status
    if darks and report.written:  # prepared darks for the resolved yamls (issue 11)
        from mirage_data.darks.programs import prepare_darks

        out = report.written[0].parent  # OUT: darks in OUT/darks (the yamls' Output:directory may not exist here)
        on_cluster = cluster["scheduler"] or cluster["workers"]
        dark_run = prepare_darks(
            report.written,
            out,
            out_dir=out / "darks",
            seed=dark_seed,
            display=bool(on_cluster) and not quiet,
            **(cluster if on_cluster else {}),
        )
        if dark_run.tasks is not None and not quiet:
            text += "\nprepared darks, per exposure:\n" + "\n".join(f"  {line}" for line in dark_run.tasks.table())
        text += "\n" + dark_run.describe()
        status = max(status, 2 if dark_run.failed else 0)
    click.echo(text if not quiet else "\n".join(line for line in text.splitlines() if not line.startswith("    ")))
    sys.exit(status)
