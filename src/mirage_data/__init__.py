"""mirage-data: get, check and prepare the Mirage JWST reference-file collection.

The public names below are loaded on first use, so that ``import mirage_data.ramp`` (or a
worker process that only linearizes darks) does not pay for the HTTP and gzip stack.

Examples
--------
Fetch one dark per FGS detector and the FGS libraries into ``reffiles/mirage_data`` (here
from the sample collection served on loopback by the test suite, ``server_url``; without
``mirror`` and ``catalog`` the real collection is fetched from STScI):

>>> from mirage_data import download_reffiles
>>> result = download_reffiles("reffiles", instrument="fgs", single_dark=True,
...                            mirror=server_url, catalog=sample_catalog, quiet=True)
>>> sorted(folder.name for folder in (result.mirage_data / "fgs").iterdir())
['cosmic_ray_library', 'darks', 'gridded_psf_library']
>>> result.export_lines[0]
'export MIRAGE_DATA=".../reffiles/mirage_data"'
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "Catalog": "mirage_data.collection.catalog",
    "CatalogEntry": "mirage_data.collection.catalog",
    "load_catalog": "mirage_data.collection.catalog",
    "Selection": "mirage_data.collection.selection",
    "SelectionError": "mirage_data.collection.selection",
    "DownloadFailed": "mirage_data.download.errors",
    "DownloadResult": "mirage_data.download.api",
    "download_reffiles": "mirage_data.download.api",
    "repair_install": "mirage_data.download.api",
    "NotEnoughSpace": "mirage_data.download.errors",
    "Plan": "mirage_data.download.plan",
    "make_plan": "mirage_data.download.plan",
    "TransferOptions": "mirage_data.download.transfer",
    "installed_status": "mirage_data.install.upkeep",
    "verify_install": "mirage_data.install.upkeep",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'mirage_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
