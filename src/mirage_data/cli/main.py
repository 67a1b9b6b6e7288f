"""The ``mirage-data`` command group and what its commands share: option sets, the one-line
error handling (exit status 0 success, 1 some files failed or are damaged, 2 bad input, 130
interrupted) and the export lines.

Only light modules are imported here; each command imports what it needs when it runs.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from mirage_data import __version__
from mirage_data.collection.catalog import CatalogError
from mirage_data.collection.layout import export_lines
from mirage_data.collection.selection import DARK_TYPES, PSF_VERSIONS, SelectionError
from mirage_data.download.errors import DownloadFailed, DownloadFolderError, LockedError, NotEnoughSpace


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"mirage-data: {message}", err=True)
    sys.exit(code)


def _user_errors(func):
    """Turn the API's documented errors into one clear line and an exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SelectionError, CatalogError, FileNotFoundError, DownloadFolderError) as exc:  # NotAnInstall too
            _fail(str(exc))
        except (NotEnoughSpace, LockedError) as exc:
            _fail(str(exc), 1)
        except DownloadFailed as exc:
            _fail(str(exc), 1)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except (ValueError, TypeError) as exc:
            _fail(str(exc))
        except PermissionError as exc:
            _fail(_permission_line(exc))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}", 1)

    return wrapper


def _permission_line(exc: PermissionError) -> str:
    """One line naming the path that could not be read or written, and what to do."""
    path = exc.filename2 or exc.filename
    path = _real_name(str(path)) if path else "a file or folder"
    return (
        f"permission denied: {path}; make it readable and writable for you (chmod/chown, or ask its "
        "owner), or use a folder of your own"
    )


def _real_name(path: str) -> str:
    """The folder a staging or temporary name stands in for (never show those names)."""
    from mirage_data.install.state import STATE_DIR

    p = Path(path)
    for parent in p.parents:
        if parent.name == STATE_DIR:
            return str(parent.parent)
    return path


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
        click.option(
            "--catalog", type=click.Path(dir_okay=False), help="A catalog file to use instead of the packaged one."
        ),
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
            "--read-timeout",
            default=60.0,
            show_default=True,
            type=click.FloatRange(0.1),
            help="Seconds without data before a retry.",
        ),
        click.option(
            "--retries",
            default=6,
            show_default=True,
            type=click.IntRange(0, 100),
            help="Retries of transient failures.",
        ),
        click.option("--no-verify-tls", is_flag=True, help="Do not check TLS certificates (not recommended)."),
        click.option("--no-wait", is_flag=True, help="Fail at once if another run is using the folder."),
        click.option("-q", "--quiet", is_flag=True, help="No progress output."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _transfer(kw: dict):
    from mirage_data.download.transfer import TransferOptions

    return TransferOptions(
        connect_timeout=kw.pop("connect_timeout"),
        read_timeout=kw.pop("read_timeout"),
        retries=kw.pop("retries"),
        verify_tls=not kw.pop("no_verify_tls"),
    )


class _OneLineErrors(click.Group):
    """Click's usage errors (a bad option value, a missing argument) as one line, exit status 2,
    like every other bad input, instead of click's three-line usage block."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            _fail(exc.format_message().rstrip(".") + hint, exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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


def cluster_options(func):
    """``--scheduler``, ``--workers``, ``--threads-per-worker``: run the tasks on Dask."""
    options = [
        click.option(
            "--scheduler",
            envvar="MIRAGE_DATA_SCHEDULER",
            help="Run the tasks on this Dask cluster: scheduler address (tcp://host:8786) or scheduler file "
            '[env: MIRAGE_DATA_SCHEDULER]. Needs pip install "mirage-data[dask]".',
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 256),
            help="Run the tasks on a local Dask cluster of this many worker processes.",
        ),
        click.option(
            "--threads-per-worker",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            help="Threads of each --workers process (one task each).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
