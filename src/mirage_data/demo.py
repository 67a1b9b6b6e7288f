"""The offline demo: a sample collection, served on loopback, fetched with the real download path.

`run_demo` makes a small sample collection (same paths, names and formats as the real one,
full-frame darks with few groups), serves it with a loopback HTTP server it starts itself,
and runs `download_reffiles` against it. Nothing leaves the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from mirage_data.download.api import DownloadResult, download_reffiles
from mirage_data.progress import QuietProgress
from mirage_data.testing.sample import make_sample_collection
from mirage_data.testing.server import CollectionServer

DEFAULT_DEMO_FOLDER = "mirage-data-demo"


def run_demo(
    folder: str | os.PathLike = DEFAULT_DEMO_FOLDER,
    *,
    progress: QuietProgress | None = None,
    quiet: bool = False,
    **download_options,
) -> DownloadResult:
    """Run the demo in *folder*: ``<folder>/sample_collection`` is served, ``<folder>/mirage_data``
    is the result.

    Parameters
    ----------
    folder : str or path
        Working folder (created if needed).
    progress, quiet
        As for `download_reffiles`.
    **download_options
        Passed on to `download_reffiles` (for example ``dark_type="both"``).

    Returns
    -------
    DownloadResult
    """
    folder = Path(folder).expanduser().absolute()
    collection = folder / "sample_collection"
    catalog = make_sample_collection(collection)
    with CollectionServer(collection) as server:
        return download_reffiles(
            folder,
            mirror=server.url,
            catalog=catalog,
            progress=progress,
            quiet=quiet,
            **download_options,
        )
