"""Small collections made on the spot, for tests of the transfer engine and installer.

Files sit at real catalog paths; their bytes are generated here (gzip streams, tarballs), so a
test can say exactly what each file holds and break it at will.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from mirage_data.collection.catalog import Catalog, load_catalog

REAL = load_catalog()
#: FGS raw darks, the five of GUIDER2 first: `dark_bytes` makes GUIDER2 darks, which the
#: downloader's content checks accept at FGS_RAW[0] .. FGS_RAW[4].
FGS_RAW = sorted(
    (e.relative_path for e in REAL if e.instrument == "fgs" and e.dark_kind == "raw"),
    key=lambda rp: REAL.get(rp).detectors != ("GUIDER2",),
)
FGS_CR = "fgs/cosmic_ray_library/mirage_fgs_cr_library.tar.gz"


def dark_bytes(n_bytes: int, seed: int = 0) -> bytes:
    """Uncompressed content of a raw GUIDER2 dark of about *n_bytes*: a real FITS file (the
    downloader checks what it installs) whose SCI holds low-entropy integers, compressing like
    a real dark."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    rows = max(1, (n_bytes - 3 * 2880) // 512)
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"], primary.header["DETECTOR"] = "FGS", "GUIDER2"
    sci = (12000 + rng.normal(0, 6, (1, 1, rows, 256))).astype(np.uint16)
    buf = io.BytesIO()
    fits.HDUList([primary, fits.ImageHDU(sci, name="SCI")]).writeto(buf)
    return buf.getvalue()


def library_fits(seed: int = 0, stamps: int = 5) -> bytes:
    """A small cosmic-ray library file: an empty primary HDU and a cube of 21 x 21 stamps."""
    from astropy.io import fits

    cube = np.random.default_rng(seed).random((stamps, 21, 21)).astype(np.float32)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube)]).writeto(buf)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def tarball(members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A .tar.gz with regular files *members* (name -> bytes) and optional raw TarInfo entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def make_collection(root: Path, files: dict[str, bytes], *, checksums: bool = True) -> Catalog:
    """Write *files* (catalog relative path -> bytes) below *root*; return their catalog
    (with exact sizes and sha256 when *checksums*)."""
    sums = {}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sums[rel] = (len(data), hashlib.sha256(data).hexdigest())
    catalog = REAL.subset(files)
    if checksums:
        catalog = catalog.with_checksums(sums)
    return catalog
