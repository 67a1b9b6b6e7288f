"""mirage-data: get, check and prepare the Mirage JWST reference-file collection.

Examples
--------
>>> from mirage_data import download_reffiles
>>> result = download_reffiles("/data/reffiles", instrument="nircam", single_dark=True)  # doctest: +SKIP
>>> result.export_lines[0]                                                               # doctest: +SKIP
'export MIRAGE_DATA="/data/reffiles/mirage_data"'
"""

__version__ = "0.1.0"

from .catalog import Catalog, CatalogEntry, load_catalog
from .download import DownloadFailed, DownloadResult, download_reffiles, repair_install
from .plan import NotEnoughSpace, Plan, make_plan
from .selection import Selection, SelectionError
from .transfer import TransferOptions
from .upkeep import installed_status, verify_install

__all__ = [
    "Catalog",
    "CatalogEntry",
    "DownloadFailed",
    "DownloadResult",
    "NotEnoughSpace",
    "Plan",
    "Selection",
    "SelectionError",
    "TransferOptions",
    "download_reffiles",
    "installed_status",
    "load_catalog",
    "make_plan",
    "repair_install",
    "verify_install",
]
