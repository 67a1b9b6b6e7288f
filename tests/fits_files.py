"""Real FITS files of each kind, small, and a loopback collection serving them: the material of
the content-check tests (issue 8, section 1)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.collection.catalog import load_catalog
from mirage_data.download.api import DownloadFailed, download_reffiles
from mirage_data.testing.server import CollectionServer

REAL = load_catalog()


def _dark_entry(instrument: str, kind: str, detector: str):
    return next(e for e in REAL if e.instrument == instrument and e.dark_kind == kind and e.detectors == (detector,))


G1_RAW = _dark_entry("fgs", "raw", "GUIDER1")
G1_LIN = _dark_entry("fgs", "linearized", "GUIDER1")
A5_RAW = _dark_entry("nircam", "raw", "A5")
FGS_CR = next(e for e in REAL if e.instrument == "fgs" and e.group == "cosmic_ray_library")
PSF_12 = next(e for e in REAL if e.group == "psf_library" and e.detectors == ("A1", "A2"))
PSF_345 = next(e for e in REAL if e.group == "psf_library" and e.detectors == ("A3", "A4", "A5"))
PSF_FOLDER = "mirage_data/nircam/gridded_psf_library"


# ---------------------------------------------------------------------------- real FITS files


def fits_bytes(hdus) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def dark(
    kind: str = "raw",
    instrume: str = "FGS",
    detector: str = "GUIDER1",
    ngroups: int = 2,
    n: int = 32,
    raw_dtype=np.uint16,
    extra: bool = False,
) -> bytes:
    """A small dark of its kind (FORMATS.md section 3), written by astropy."""
    primary = fits.PrimaryHDU()
    for key, value in {
        "INSTRUME": instrume,
        "DETECTOR": detector,
        "READPATT": "FGSRAPID",
        "NINTS": 1,
        "NGROUPS": ngroups,
        "NFRAMES": 1,
        "NSKIP": 0,
    }.items():
        primary.header[key] = value
    rng = np.random.default_rng(ngroups)
    shape = (1, ngroups, n, n)
    if kind == "raw":
        sci = (12000 + rng.normal(0, 5, shape)).astype(raw_dtype)
        hdus = [primary, fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(sci[:, 0], name="ZEROFRAME")]
    else:
        sci = rng.normal(0, 5, shape).astype(np.float32)
        hdus = [
            primary,
            fits.ImageHDU(sci, name="SCI"),
            fits.ImageHDU(sci + 100, name="SBANDREFPIX"),
            fits.ImageHDU(sci[:, 0], name="ZEROFRAME"),
            fits.ImageHDU(sci[:, 0] + 100, name="ZEROSBANDREFPIX"),
        ]
    if extra:
        hdus.append(fits.ImageHDU(np.zeros((4, 4), np.uint8), name="NOTES"))
    return fits_bytes(hdus)


def psf_file(detector: str = "NRCA1", seed: int = 0) -> bytes:
    header = fits.Header()
    for key, value in {
        "INSTRUME": "NIRCAM",
        "DETECTOR": detector,
        "FILTER": "F200W",
        "PUPIL": "CLEAR",
        "OPD_FILE": "OPD_RevW_ote_for_NIRCam_requirements.fits.gz",
        "OPDSLICE": 0,
        "OVERSAMP": 2,
        "NUM_PSFS": 1,
        "DET_YX0": "(1024.0, 1024.0)",
    }.items():
        header[key] = value
    cube = np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)
    return fits_bytes([fits.PrimaryHDU(cube, header=header)])


def cr_file(seed: int = 0) -> bytes:
    stamps = np.random.default_rng(seed).random((5, 21, 21)).astype(np.float32)
    return fits_bytes([fits.PrimaryHDU(), fits.ImageHDU(stamps)])


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def tarball(members: list[tuple[str, bytes]], folders: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------------- serving


def serve(root: Path, files: dict) -> object:
    """Write *files* (entry -> bytes) below *root*; return their catalog (no sizes or sha256,
    as the real collection publishes none)."""
    for entry, data in files.items():
        path = root / entry.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return REAL.subset(e.relative_path for e in files)


def fetch(tmp_path: Path, files: dict, dest: str = "dest", **kw):
    """Serve *files* on loopback and download them all; return (result or error, MIRAGE_DATA)."""
    root = tmp_path / "remote"
    catalog = serve(root, files)
    instruments = sorted({e.instrument for e in files})
    kw.setdefault("dark_type", "both")
    with CollectionServer(root) as server:
        try:
            outcome = download_reffiles(
                tmp_path / dest, instruments, mirror=server.url, catalog=catalog, quiet=True, jobs=1, **kw
            )
        except DownloadFailed as exc:
            outcome = exc
    return outcome, tmp_path / dest / "mirage_data"


def layout(mirage_data: Path) -> set[str]:
    return {
        str(p.relative_to(mirage_data))
        for p in mirage_data.rglob("*")
        if p.is_file() and ".mirage-data" not in p.relative_to(mirage_data).parts
    }


def refused(outcome, mirage_data: Path, *words: str) -> str:
    assert isinstance(outcome, DownloadFailed), outcome
    message = str(outcome)
    for word in words:
        assert word in message, message
    assert "refused" in message
    return message
