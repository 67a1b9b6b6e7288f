"""A small, synthetic SAMPLE COLLECTION: the remote side of the real collection in miniature.

`make_sample_collection` writes, below a folder, a subset of the real collection's files at
exactly their catalog paths (same names, same formats, same archive layout), plus a
``catalog.tsv`` with exact sizes and sha256 whose ``base_url`` is the folder's ``file://`` URI.
It is what ``mirage-data demo`` downloads from and the fixture of the downloader's tests.

Every file is synthetic (the headers say so in a COMMENT card) but shaped like the real one:

* darks: full-frame 2048 x 2048 ``.fits.gz`` with only ``ngroups`` groups and 1 integration,
  raw (``SCI`` uint16, ``ZEROFRAME``) and linearized (``SCI``, ``SBANDREFPIX``, ``ZEROFRAME``,
  ``ZEROSBANDREFPIX``, float32), the linearized one derived from the raw one of the same
  exposure exactly as FORMATS.md section 3 describes (``SBANDREFPIX = raw - signal``);
* tarballs whose members sit under ``mirage_data/<instrument>/...`` as Mirage's layout expects:
  cosmic-ray libraries, gridded PSF libraries (photutils/WebbPSF convention), NIRCam PSF wings,
  NIRISS ghost stamps and SOSS PSFs, NIRCam distortion files.

The output is byte-for-byte deterministic for a given seed (gzip mtime 0, fixed tar mtimes,
fixed FITS dates) and generation is idempotent (see `make_sample_collection`). The default
sample (2 groups) is 45 files, about 340 MB, written in about 4 s on 2 cores.

Choices where the real files could not be checked (no network when this was written):

* FASTAXIS/SLOWAXIS are the per-detector DMS values of `DETECTOR_AXES`.
* PSF libraries: one filter per detector, F200W/CLEAR (NIRCam short wave), F444W/CLEAR
  (NIRCam long wave, detector named ``nrca5``/``nrcb5`` as WebbPSF does), F277W/CLEARP
  (NIRISS: a filter-wheel filter, as Mirage swaps filter and pupil for pupil-wheel ones) and
  no filter for FGS (``fgs_guider1_fovp..._npsf..._predicted_realization0.fits``, the pattern
  Mirage globs for FGS; FILTER = PUPIL = 'N/A' in the header). 2 x 2 grid, fovp 11, samp 2,
  each PSF summing to OVERSAMP**2 as WebbPSF writes them for photutils.
* PSF wings: ``nircam_<det>_<filter>_clear_fovp101_samp1_predicted_realization0.fits`` with the
  image (odd size) in extension ``DET_DIST``, the pattern Mirage globs in ``psf_wings/``.
* Cosmic rays: files 00 and 01 of each library only (Mirage reads 00..09), 20 stamps each.
* Ghosts: ``niriss_ghost_cen.fits`` (Mirage's default) and ``niriss_ghost_cen_f150w.fits``
  (name invented). SOSS: ``SOSS_CLEAR_PSF.fits`` (cube + ``WAV``) and
  ``SOSS_CLEAR_PSF_order1_1.npy`` (names after Mirage's soss_trace module). Distortion:
  ``<DETECTOR>_FULL_distortion.asdf`` per NIRCam detector (names invented, minimal ASDF).
* Calibration file names in the linearized darks' R_* keywords are invented.

Examples
--------
>>> from mirage_data.testing.sample import make_sample_collection  # doctest: +SKIP
>>> catalog = make_sample_collection("/tmp/sample")  # doctest: +SKIP
>>> catalog.base_url  # doctest: +SKIP
'file:///tmp/sample/'
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from astropy.io import fits
from isal import isal_zlib

from mirage_data.collection.catalog import (
    DETECTORS,
    Catalog,
    CatalogEntry,
    CatalogError,
    crds_detector_name,
    linearized_name,
    load_catalog,
)
from mirage_data.io.atomic import atomic_path, atomic_write_bytes

__all__ = [
    "CATALOG_NAME",
    "DETECTOR_AXES",
    "make_sample_collection",
    "sample_entries",
]

#: Name of the catalog file written at the root of a sample collection.
CATALOG_NAME = "catalog.tsv"

#: Parameters of the last generation, so a call with other parameters regenerates.
_PARAMS_NAME = ".mirage-data-sample.json"

#: Bump when the generator's output changes, so old sample folders are regenerated.
_GENERATOR_VERSION = 1

#: (FASTAXIS, SLOWAXIS) per CRDS detector name, the DMS-orientation values that SSB's level-1b
#: conversion writes (NIRCam: A1 A3 B2 B4 ALONG are flipped in x, the others in y; NIRISS and
#: GUIDER1 are transposed and rotated 180 degrees; GUIDER2 is rotated 90 degrees).
DETECTOR_AXES: dict[str, tuple[int, int]] = {
    **{d: (-1, 2) for d in ("NRCA1", "NRCA3", "NRCB2", "NRCB4", "NRCALONG")},
    **{d: (1, -2) for d in ("NRCA2", "NRCA4", "NRCB1", "NRCB3", "NRCBLONG")},
    "NIS": (-2, -1),
    "GUIDER1": (-2, -1),
    "GUIDER2": (2, -1),
}

_INSTRUME = {"nircam": "NIRCAM", "niriss": "NIRISS", "fgs": "FGS"}
_READPATT = {"nircam": "RAPID", "niriss": "NISRAPID", "fgs": "FGSRAPID"}
_EXP_TYPE = {"nircam": "NRC_DARK", "niriss": "NIS_DARK", "fgs": "FGS_DARK"}

#: Second exposure (raw + linearized) added with ``extra_darks=True``.
_EXTRA_DARK_DETECTORS = {"nircam": ("A1",), "niriss": ("NIS",), "fgs": ("GUIDER2",)}

# Full-frame geometry and timing (s) of the NIR detectors (all three instruments).
_NPIX = 2048
_NREF = 4  # reference-pixel border width
_NAMP = 4  # readout amplifiers, 512-pixel stripes across the slow axis
_TFRAME = 10.73676

# Dark model (DN; DN/s). Moderate entropy on purpose: the files must gzip fast and stay small.
_BIAS_LEVEL = 12000.0
_READ_NOISE = 2.0
_DARK_RATE = 0.003
_HOT_FRACTION = 5e-4
_LINEARITY = 2.0e-6  # quadratic coefficient of the (synthetic) linearity correction
_QUANTUM = 8  # linearized values are multiples of 1/_QUANTUM DN (compress well, exact in float32)

_GZIP_LEVEL = 1  # isal level 1: as fast as level 0 on this data and about 20 % smaller
_FIXED_DATE = "2024-01-01T00:00:00"
_TAR_MTIME = 1704067200  # 2024-01-01T00:00:00Z
_SYNTHETIC = "Synthetic sample file written by mirage-data; not real JWST data."

# Invented but plausibly named CRDS files recorded in the linearized darks' headers:
# reftype -> (instrument's first file number); the detector's index is added to it.
_CRDS_NUMBERS = {
    "nircam": {"linearity": 52, "mask": 76, "saturation": 89, "superbias": 151},
    "niriss": {"linearity": 11, "mask": 16, "saturation": 15, "superbias": 181},
    "fgs": {"linearity": 10, "mask": 13, "saturation": 9, "superbias": 35},
}


# --------------------------------------------------------------------------------------------
# Which files
# --------------------------------------------------------------------------------------------


def sample_entries(catalog: Catalog | None = None, *, extra_darks: bool = True) -> list[CatalogEntry]:
    """The entries of the real catalog that a sample collection contains.

    Every non-dark file (the 13 tarballs of the catalog), and for every detector the first
    raw dark of the catalog together with its linearized counterpart; with *extra_darks* also
    a second exposure (raw + linearized) for NIRCam A1, NIRISS and FGS GUIDER2, so that keeping "one
    dark per detector" is a real choice there.

    Parameters
    ----------
    catalog : Catalog, optional
        The catalog to pick from (default: the packaged real collection).
    extra_darks : bool, optional
        Add the second exposures described above (default True).

    Returns
    -------
    list of CatalogEntry
        In the catalog's order.
    """
    catalog = load_catalog() if catalog is None else catalog
    wanted = [e.relative_path for e in catalog if not e.is_dark]
    for instrument, detectors in DETECTORS.items():
        for detector in detectors:
            raws = [
                e
                for e in catalog
                if e.instrument == instrument
                and e.dark_kind == "raw"
                and e.detectors == (detector,)
                and linearized_name(e.relative_path) in catalog
            ]
            count = 2 if extra_darks and detector in _EXTRA_DARK_DETECTORS[instrument] else 1
            if len(raws) < count:
                raise CatalogError(
                    f"catalog has fewer than {count} raw+linearized dark pairs for {instrument} {detector}"
                )
            for raw in raws[:count]:
                wanted += [raw.relative_path, linearized_name(raw.relative_path)]
    return list(catalog.subset(wanted))


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def make_sample_collection(
    root: str | os.PathLike[str], *, ngroups: int = 2, extra_darks: bool = True, seed: int = 0
) -> Catalog:
    """Write a sample collection below *root* and return its catalog.

    The files of `sample_entries` are written at their catalog relative paths below *root*,
    then ``root/catalog.tsv`` (`Catalog.write`) with their exact ``size`` and ``sha256`` and
    ``base_url`` set to ``root.as_uri() + "/"``. Every file is first written under a hidden
    temporary name in its folder and renamed when complete, and the catalog is written last,
    so an interrupted run never leaves a partial file at a final path nor a catalog that
    names missing files.

    Idempotent: when ``root/catalog.tsv`` exists, was written by a generation with the same
    parameters and every file it lists exists with the recorded size, nothing is generated
    (only the catalog's ``base_url`` is rewritten if the folder has moved).

    Parameters
    ----------
    root : str or path-like
        Folder of the collection (created if needed).
    ngroups : int, optional
        Groups per dark exposure (default 2). Darks are full frame with 1 integration; each
        group (and each zero frame) adds about 3 MB to a raw and 4 MB to a linearized dark:
        with 2 groups about 9 and 13 MB, 340 MB for the whole default sample.
    extra_darks : bool, optional
        Add a second exposure for NIRCam A1, NIRISS and FGS GUIDER2 (default True).
    seed : int, optional
        Seed of the synthetic data (default 0); the same seed gives the same bytes (with the
        same numpy and isal versions: their random streams and deflate output are not
        promised to stay the same across releases).

    Returns
    -------
    Catalog
        The sample's catalog, equal to ``load_catalog(root / "catalog.tsv")``.

    Raises
    ------
    ValueError
        If *ngroups* is not a positive integer.
    """
    if isinstance(ngroups, bool) or not isinstance(ngroups, (int, np.integer)) or ngroups < 1:
        raise ValueError(f"ngroups must be a positive integer, not {ngroups!r}")
    ngroups, seed = int(ngroups), int(seed)
    root = Path(root).expanduser().resolve()
    catalog_path = root / CATALOG_NAME
    base_url = root.as_uri() + "/"
    params = {
        "generator_version": _GENERATOR_VERSION,
        "ngroups": ngroups,
        "extra_darks": bool(extra_darks),
        "seed": seed,
    }

    existing = _existing_sample(root, params)
    if existing is not None:
        if existing.base_url != base_url:  # the folder was moved or copied: just re-point it
            _write_catalog(replace(existing, base_url=base_url), catalog_path)
            return load_catalog(catalog_path)
        return existing

    root.mkdir(parents=True, exist_ok=True)
    for stale in (catalog_path, root / _PARAMS_NAME):  # the old catalog no longer holds
        stale.unlink(missing_ok=True)
    entries = sample_entries(extra_darks=extra_darks)
    by_path = {e.relative_path: e for e in entries}

    jobs: list[Callable[[], dict[str, tuple[int, str]]]] = []
    # Darks first: they are the long jobs, so the pool stays busy to the end.
    for entry in entries:
        if entry.dark_kind == "raw":
            linearized = by_path[linearized_name(entry.relative_path)]
            jobs.append(partial(_write_dark_pair, root, entry, linearized, ngroups, seed))
    for entry in entries:
        if not entry.is_dark:
            jobs.append(partial(_write_archive, root, entry, seed))

    checksums: dict[str, tuple[int, str]] = {}
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # numpy, isal and hashlib release the GIL
        for result in pool.map(_call, jobs):
            checksums.update(result)

    sample = Catalog(entries=tuple(entries), base_url=base_url, source=str(catalog_path))
    sample = sample.with_checksums(checksums)
    # approx_size of the sample's own files, so sizes shown for the sample are the sample's.
    sample = replace(sample, entries=tuple(replace(e, approx_size=e.size or 0) for e in sample.entries))
    _atomic_write_bytes(root / _PARAMS_NAME, (json.dumps(params, sort_keys=True) + "\n").encode())
    _write_catalog(sample, catalog_path)
    return load_catalog(catalog_path)


def _call(job: Callable[[], dict[str, tuple[int, str]]]) -> dict[str, tuple[int, str]]:
    return job()


def _existing_sample(root: Path, params: dict) -> Catalog | None:
    """The catalog of a complete earlier generation with the same parameters, else None."""
    try:
        if json.loads((root / _PARAMS_NAME).read_text("utf-8")) != params:
            return None
        catalog = load_catalog(root / CATALOG_NAME)
    except (OSError, ValueError):  # CatalogError and JSONDecodeError are ValueErrors
        return None
    if len(catalog) == 0:
        return None
    for entry in catalog:
        try:
            if entry.size is None or (root / entry.relative_path).stat().st_size != entry.size:
                return None
        except OSError:
            return None
    return catalog


def _write_catalog(catalog: Catalog, path: Path) -> None:
    catalog.write(path)  # atomic


# --------------------------------------------------------------------------------------------
# Writing files safely
# --------------------------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> tuple[int, str]:
    """Write *data* to *path* via a temporary name; return (size, sha256)."""
    atomic_write_bytes(path, data)
    return len(data), hashlib.sha256(data).hexdigest()


class _GzipSink:
    """A gzip file written in a stream (isal), hashed on the fly, renamed into place on close.

    ``compressobj(wbits=31)`` writes a standard gzip member with mtime 0 and no file name,
    so the bytes depend on the data only.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._target = atomic_path(path)  # entered here, left in close() or abort()
        self.tmp = self._target.__enter__()
        self._file = open(self.tmp, "wb")
        self._compressor = isal_zlib.compressobj(_GZIP_LEVEL, isal_zlib.DEFLATED, 31)
        self._sha256 = hashlib.sha256()
        self._size = 0
        self.written = 0  # uncompressed bytes, for FITS padding

    def _out(self, data: bytes) -> None:
        if data:
            self._file.write(data)
            self._sha256.update(data)
            self._size += len(data)

    def write(self, data: bytes | np.ndarray) -> None:
        """Compress *data* (bytes, or a C-contiguous array written as its raw bytes)."""
        self.written += data.nbytes if isinstance(data, np.ndarray) else len(data)
        self._out(self._compressor.compress(data))

    def pad(self, fill: bytes = b"\0") -> None:
        """Pad the uncompressed stream to the next multiple of the FITS block (2880 bytes)."""
        remainder = self.written % 2880
        if remainder:
            self.write(fill * (2880 - remainder))

    def close(self) -> tuple[int, str]:
        self._out(self._compressor.flush())
        self._file.close()
        self._target.__exit__(None, None, None)
        return self._size, self._sha256.hexdigest()

    def abort(self) -> None:
        self._file.close()
        self._target.__exit__(RuntimeError, RuntimeError("aborted"), None)


# --------------------------------------------------------------------------------------------
# Darks
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends on the seed and on stable keys (never on Python's hash())."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


def _exposure_time(relative_path: str) -> tuple[str, str]:
    """DATE-OBS and TIME-OBS from the collection's dark name (``..._2016-01-09T00h03m58_...``)."""
    m = re.search(r"(\d{4}-\d{2}-\d{2})T(\d{2})h(\d{2})m(\d{2})", relative_path)
    if m is None:
        return "2016-01-01", "00:00:00.000"
    return m.group(1), f"{m.group(2)}:{m.group(3)}:{m.group(4)}.000"


def _stripe_vector(values: np.ndarray) -> np.ndarray:
    """Expand one value per amplifier to one value per pixel across the amplifier stripes."""
    return np.repeat(np.asarray(values, dtype=np.float32), _NPIX // _NAMP)


class _DetectorModel:
    """The fixed part of a detector's darks: superbias, dark-current map, amplifier layout.

    The superbias is structured but smooth on purpose: a level, one offset per amplifier
    stripe, an even/odd pattern and a slow drift along the fast axis, and row-block offsets
    along the slow axis. Runs of equal values let gzip shrink the SBANDREFPIX planes to almost
    nothing; the incompressible part of the darks is the read noise.
    """

    def __init__(self, instrument: str, detector: str, seed: int) -> None:
        self.instrument = instrument
        self.detector = detector
        self.crds_name = crds_detector_name(instrument, detector)
        self.fastaxis, self.slowaxis = DETECTOR_AXES[self.crds_name]
        # Amplifier stripes cross the slow axis: 512-column stripes when x is the fast axis
        # (NIRCam), 512-row stripes when y is (NIRISS, FGS).
        self.x_fast = abs(self.fastaxis) == 1
        rng = _rng(seed, "detector", instrument, detector)
        n = _NPIX
        coordinate = np.arange(n)
        drift = np.zeros(n)
        for _ in range(4):  # a few slow waves along the fast axis
            cycles, phase = rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
            drift += rng.normal(0.0, 1.5) * np.sin(2 * np.pi * cycles * coordinate / n + phase)
        even_odd = np.where(coordinate % 2 == 1, 1.0, -1.0) * round(rng.uniform(1.0, 3.0))
        along_fast = (
            _BIAS_LEVEL
            + round(rng.normal(0.0, 400.0))
            + _stripe_vector(rng.normal(0.0, 150.0, _NAMP).round())
            + np.round(drift)
            + even_odd
        )
        blocks = np.cumsum(rng.normal(0.0, 1.0, n // 16)).round()
        along_slow = np.repeat(blocks - blocks.mean().round(), 16)
        if self.x_fast:
            bias = along_fast[np.newaxis, :] + along_slow[:, np.newaxis]
        else:
            bias = along_fast[:, np.newaxis] + along_slow[np.newaxis, :]
        self.superbias = bias.astype(np.float32)  # integer DN
        # Dark current: a low floor plus hot pixels (log-normal rates), none in the border.
        rate = np.full((n, n), _DARK_RATE, dtype=np.float32)
        nhot = int(_HOT_FRACTION * n * n)
        ys = rng.integers(_NREF, n - _NREF, nhot)
        xs = rng.integers(_NREF, n - _NREF, nhot)
        rate[ys, xs] = rng.lognormal(0.5, 1.5, nhot).astype(np.float32)
        self.rate = rate
        self.hot = (ys, xs)
        # Read noise: a discretised Gaussian (256 quantiles) indexed by random bytes, several
        # times cheaper than fresh normals, which dominated the generation time.
        quantiles = np.sort(rng.standard_normal(256 * 64))[32::64]
        self.noise_table = (quantiles * _READ_NOISE).astype(np.float32)

    def stripes(self, per_amp: np.ndarray) -> np.ndarray:
        """A (2048, 1) or (1, 2048) array of per-amplifier values, broadcastable on a frame."""
        vector = _stripe_vector(per_amp)
        return vector[np.newaxis, :] if self.x_fast else vector[:, np.newaxis]

    def header_cards(self, relative_path: str, ngroups: int) -> list[tuple[str, object, str]]:
        """Primary-header cards shared by the raw and linearized darks."""
        date_obs, time_obs = _exposure_time(relative_path)
        name = PurePosixPath(relative_path).name
        cards: list[tuple[str, object, str]] = [
            ("DATE", _FIXED_DATE, "UTC date file created"),
            ("ORIGIN", "mirage-data", "Institution / software that wrote the file"),
            # No comment: the longest names only just fit on a card.
            ("FILENAME", name[: -len(".gz")] if name.endswith(".gz") else name, ""),
            ("TELESCOP", "JWST", "Telescope used to acquire the data"),
            ("INSTRUME", _INSTRUME[self.instrument], "Instrument used to acquire the data"),
            ("DETECTOR", self.crds_name, "Name of detector used to acquire the data"),
        ]
        if self.instrument == "nircam":
            cards += [
                ("MODULE", self.detector[0], "NIRCam module: A or B"),
                ("CHANNEL", "LONG" if self.detector.endswith("5") else "SHORT", "NIRCam channel"),
            ]
        cards += [
            ("DATE-OBS", date_obs, "UTC date at start of exposure"),
            ("TIME-OBS", time_obs, "UTC time at start of exposure"),
            ("EXP_TYPE", _EXP_TYPE[self.instrument], "Type of data in the exposure"),
            ("READPATT", _READPATT[self.instrument], "Readout pattern"),
            ("NINTS", 1, "Number of integrations in exposure"),
            ("NGROUPS", ngroups, "Number of groups in integration"),
            ("NFRAMES", 1, "Number of frames per group"),
            ("NSKIP", 0, "Number of frames skipped"),
            ("GROUPGAP", 0, "Number of frames dropped between groups"),
            ("TFRAME", _TFRAME, "[s] Time between frames"),
            ("TGROUP", _TFRAME, "[s] Time between groups"),
            ("SUBARRAY", "FULL", "Subarray used"),
            ("SUBSTRT1", 1, "Starting pixel in axis 1 direction"),
            ("SUBSTRT2", 1, "Starting pixel in axis 2 direction"),
            ("SUBSIZE1", _NPIX, "Number of pixels in axis 1 direction"),
            ("SUBSIZE2", _NPIX, "Number of pixels in axis 2 direction"),
            ("FASTAXIS", self.fastaxis, "Fast readout axis direction"),
            ("SLOWAXIS", self.slowaxis, "Slow readout axis direction"),
        ]
        return cards

    def crds_cards(self) -> list[tuple[str, object, str]]:
        """R_* cards naming the (invented) calibration files used to linearize."""
        index = DETECTORS[self.instrument].index(self.detector)
        numbers = _CRDS_NUMBERS[self.instrument]

        def ref(reftype: str) -> str:
            return f"jwst_{self.instrument}_{reftype}_{numbers[reftype] + index:04d}.fits"

        return [
            ("R_LINEAR", ref("linearity"), "Linearity reference file"),
            ("R_MASK", ref("mask"), "Mask reference file"),
            ("R_SATURA", ref("saturation"), "Saturation reference file"),
            ("R_SUPERB", ref("superbias"), "Superbias reference file"),
            ("S_DQINIT", "COMPLETE", "Data Quality Initialization"),
            ("S_SATURA", "COMPLETE", "Saturation Checking"),
            ("S_SUPERB", "COMPLETE", "Superbias Subtraction"),
            ("S_REFPIX", "COMPLETE", "Reference Pixel Correction"),
            ("S_LINEAR", "COMPLETE", "Linearity Correction"),
        ]


def _primary_header(cards: Iterable[tuple[str, object, str]]) -> bytes:
    header = fits.Header()
    header["SIMPLE"] = (True, "conforms to FITS standard")
    header["BITPIX"] = (8, "array data type")
    header["NAXIS"] = (0, "number of array dimensions")
    header["EXTEND"] = True
    for key, value, comment in cards:
        header[key] = (value, comment)
    header["COMMENT"] = _SYNTHETIC
    return header.tostring().encode("ascii")


def _image_header(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    """An IMAGE extension header: uint16 as BITPIX 16 + BZERO 32768, float32 as BITPIX -32."""
    header = fits.Header()
    header["XTENSION"] = ("IMAGE", "Image extension")
    header["BITPIX"] = (16 if dtype == "uint16" else -32, "array data type")
    header["NAXIS"] = (len(shape), "number of array dimensions")
    for axis, length in enumerate(reversed(shape), start=1):
        header[f"NAXIS{axis}"] = length
    header["PCOUNT"] = (0, "number of parameters")
    header["GCOUNT"] = (1, "number of groups")
    if dtype == "uint16":
        header["BSCALE"] = 1
        header["BZERO"] = 32768
    header["EXTNAME"] = (name, "extension name")
    header["BUNIT"] = "DN"
    return header.tostring().encode("ascii")


def _uint16_fits(frame: np.ndarray) -> np.ndarray:
    """The FITS bytes of a uint16 frame (BITPIX 16, BZERO 32768): big-endian ``value - 32768``."""
    # Flipping the top bit is subtracting 32768 modulo 2**16, i.e. the int16 FITS stores.
    shifted = frame ^ np.uint16(0x8000)
    return shifted.byteswap(inplace=True).view(np.uint8)


def _float32_fits(frame: np.ndarray) -> np.ndarray:
    """The FITS bytes of a float32 frame (BITPIX -32): big-endian IEEE."""
    return frame.astype(">f4").view(np.uint8)


def _write_dark_pair(
    root: Path, raw: CatalogEntry, linearized: CatalogEntry, ngroups: int, seed: int
) -> dict[str, tuple[int, str]]:
    """Write one exposure: the raw dark and the linearized dark derived from it.

    Streams group by group (memory stays a few frames whatever *ngroups* is). For group g:
    ``sb = superbias + refpix_offset[g]`` (per amplifier, a multiple of 1/8 DN),
    ``raw = round(sb + rate * t_g + read_noise)``, ``SCI = linearity(raw - sb)`` on the 1/8 DN
    grid and ``SBANDREFPIX = sb``, so that ``SBANDREFPIX = raw - (raw after superbias and
    refpix)`` holds exactly, as in the real files. RAPID: the zero frame is the first group.
    """
    model = _DetectorModel(raw.instrument, raw.detectors[0], seed)
    rng = _rng(seed, "exposure", raw.relative_path)
    offsets = np.round(rng.normal(0.0, 2.0, (ngroups, _NAMP)) * _QUANTUM) / _QUANTUM
    cube = (1, ngroups, _NPIX, _NPIX)
    frame = (1, _NPIX, _NPIX)

    def refpix_and_superbias(group: int) -> np.ndarray:
        return model.superbias + model.stripes(offsets[group])

    raw_sink = _GzipSink(root / raw.relative_path)
    lin_sink = _GzipSink(root / linearized.relative_path)
    try:
        raw_sink.write(_primary_header(model.header_cards(raw.relative_path, ngroups)))
        raw_sink.write(_image_header("SCI", "uint16", cube))
        lin_cards = model.header_cards(linearized.relative_path, ngroups) + model.crds_cards()
        lin_sink.write(_primary_header(lin_cards))
        lin_sink.write(_image_header("SCI", "float32", cube))
        raw_zero = lin_zero = None
        for group in range(ngroups):
            sb = refpix_and_superbias(group)
            noise = rng.integers(0, 256, (_NPIX, _NPIX), dtype=np.uint8)
            ramp = model.noise_table[noise]
            ramp += model.rate * np.float32(_TFRAME * (group + 1))
            ramp += sb
            np.rint(ramp, out=ramp)
            np.clip(ramp, 0, 65535, out=ramp)
            raw_frame = ramp.astype(np.uint16)
            raw_sink.write(_uint16_fits(raw_frame))
            signal = ramp
            signal -= sb  # raw - (superbias + refpix): exact, both on the 1/8 DN grid
            # Linearity correction, quantised to 1/8 DN. Only hot pixels carry enough signal
            # for it to change anything (|noise| < 20 DN moves by < 1/1000 DN and rounds back).
            hot = signal[model.hot]
            hot += np.float32(_LINEARITY) * hot * np.abs(hot)
            signal[model.hot] = np.rint(hot * _QUANTUM) / _QUANTUM
            lin_sink.write(_float32_fits(signal))
            if group == 0:
                raw_zero, lin_zero = raw_frame, signal
        raw_sink.pad()
        raw_sink.write(_image_header("ZEROFRAME", "uint16", frame))
        raw_sink.write(_uint16_fits(raw_zero))
        raw_sink.pad()
        lin_sink.pad()
        lin_sink.write(_image_header("SBANDREFPIX", "float32", cube))
        for group in range(ngroups):
            lin_sink.write(_float32_fits(refpix_and_superbias(group)))
        lin_sink.pad()
        lin_sink.write(_image_header("ZEROFRAME", "float32", frame))
        lin_sink.write(_float32_fits(lin_zero))
        lin_sink.pad()
        lin_sink.write(_image_header("ZEROSBANDREFPIX", "float32", frame))
        lin_sink.write(_float32_fits(refpix_and_superbias(0)))
        lin_sink.pad()
        return {raw.relative_path: raw_sink.close(), linearized.relative_path: lin_sink.close()}
    except BaseException:
        raw_sink.abort()
        lin_sink.abort()
        raise


# --------------------------------------------------------------------------------------------
# Tarballs
# --------------------------------------------------------------------------------------------


def _fits_bytes(hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _tar_gz_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A deterministic .tar.gz of regular files, with an entry for every folder above them."""
    buf = io.BytesIO()
    # GzipFile with an empty name and mtime 0: the gzip header carries neither.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            seen: set[str] = set()
            for name, data in members:
                parents = list(PurePosixPath(name).parents)[:-1]  # without "."
                for folder in reversed(parents):
                    if str(folder) not in seen:
                        seen.add(str(folder))
                        info = _tarinfo(str(folder), tarfile.DIRTYPE, 0o755)
                        tar.addfile(info)
                info = _tarinfo(name, tarfile.REGTYPE, 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = _TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_archive(root: Path, entry: CatalogEntry, seed: int) -> dict[str, tuple[int, str]]:
    builders = {
        "cosmic_ray_library": _cosmic_ray_members,
        "psf_library": _psf_library_members,
        "psf_wings": _psf_wings_members,
        "ghosts": _ghost_members,
        "soss": _soss_members,
        "distortion": _distortion_members,
    }
    rng = _rng(seed, "archive", entry.relative_path)
    members = builders[entry.group](entry, rng)
    return {entry.relative_path: _atomic_write_bytes(root / entry.relative_path, _tar_gz_bytes(members))}


def _header(cards: Iterable[tuple[str, object, str]]) -> fits.Header:
    header = fits.Header()
    header["DATE"] = (_FIXED_DATE, "UTC date file created")
    header["ORIGIN"] = ("mirage-data", "Institution / software that wrote the file")
    for key, value, comment in cards:
        header[key] = (value, comment)
    header["COMMENT"] = _SYNTHETIC
    return header


# Cosmic rays -------------------------------------------------------------------------------

_CR_LIBRARIES = {"SUNMAX": 5.762e-6, "SUNMIN": 1.587e-5, "FLARES": 9.8729e-3}
_CR_FILES = ("00", "01")  # the real libraries have 00..09; two keep the sample small
_CR_STAMPS = 20
_CR_STAMP_SIZE = 21


def _cr_suffixes(instrument: str) -> list[str]:
    label = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[instrument]
    return [f"IPC_{label}_{detector}" for detector in DETECTORS[instrument]]


def _cosmic_ray_stamps(rng: np.random.Generator) -> np.ndarray:
    """Stamps of cosmic-ray tracks (electrons), each a short segment blurred by 3x3 IPC."""
    size = _CR_STAMP_SIZE
    stamps = np.zeros((_CR_STAMPS, size, size), dtype=np.float32)
    ipc = np.array([[0.0021, 0.0166, 0.0021], [0.0166, 0.9252, 0.0166], [0.0021, 0.0166, 0.0021]])
    for stamp in stamps:
        length = rng.uniform(0.0, 8.0)
        angle = rng.uniform(0.0, np.pi)
        energy = rng.lognormal(7.0, 0.8)  # total deposit, e-
        steps = max(1, int(length * 3))
        track = np.zeros((size, size))
        c = size // 2
        for t in np.linspace(-length / 2, length / 2, steps):
            y = int(round(c + t * np.sin(angle)))
            x = int(round(c + t * np.cos(angle)))
            track[y, x] += energy / steps
        blurred = np.zeros_like(track)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                blurred += ipc[dy + 1, dx + 1] * np.roll(np.roll(track, dy, 0), dx, 1)
        stamp[:] = np.round(blurred, 1)
    return stamps


def _cosmic_ray_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    folder = f"mirage_data/{entry.instrument}/cosmic_ray_library"
    members = []
    for library, rate in _CR_LIBRARIES.items():
        for number in _CR_FILES:
            for suffix in _cr_suffixes(entry.instrument):
                header = _header(
                    [
                        ("LIBRARY", library, "Cosmic-ray environment (MCD 1.7)"),
                        ("CRRATE", rate, "[hits/pixel/s] Cosmic-ray rate"),
                        ("FILENUM", int(number), "File number within the library"),
                        ("DETSUFX", suffix, "Detector / IPC variant"),
                    ]
                )
                stamps = fits.ImageHDU(_cosmic_ray_stamps(rng))
                stamps.header["BUNIT"] = "electrons"
                stamps.header["NSTAMPS"] = (_CR_STAMPS, "Number of cosmic-ray stamps")
                data = _fits_bytes([fits.PrimaryHDU(header=header), stamps])
                members.append((f"{folder}/CRs_MCD1.7_{library}_{number}_{suffix}.fits", data))
    return members


# PSF libraries -----------------------------------------------------------------------------

_PSF_FOV = 11  # detector pixels
_PSF_SAMP = 2  # oversampling
_PSF_GRID = 2  # 2 x 2 grid: npsf 4
_PSF_WFE = "predicted"
_PSF_REALIZATION = 0
_WINGS_SIZE = 101  # odd: Mirage crops one pixel all round and needs odd sizes


def _psf_detector_setup(instrument: str, detector: str) -> tuple[str, str, str, str]:
    """(name in file names, DETECTOR keyword, FILTER, PUPIL) of a detector's PSF library.

    NIRCam: WebbPSF names (NRCA5/NRCB5 for the LONG detectors), F200W/CLEAR on the short-wave
    and F444W/CLEAR on the long-wave detectors. NIRISS: F277W/CLEARP, a filter-wheel filter,
    because for pupil-wheel filters (F150W...) Mirage swaps filter and pupil when matching.
    FGS: no filter; Mirage matches FGS libraries on ``fgs_<det>_fovp*`` and overrides the
    FILTER/PUPIL keywords with N/A.
    """
    if instrument == "nircam":
        name = f"nrc{detector.lower()}"
        long_wave = detector.endswith("5")
        return name, name.upper(), ("F444W" if long_wave else "F200W"), "CLEAR"
    if instrument == "niriss":
        return "nis", "NIS", "F277W", "CLEARP"
    return detector.lower(), detector, "N/A", "N/A"


def _psf_file_name(instrument: str, detector: str, *, wings: bool = False) -> str:
    det_name, _, filt, pupil = _psf_detector_setup(instrument, detector)
    middle = "" if instrument == "fgs" else f"_{filt.lower()}_{pupil.lower()}"
    # Wing files carry no npsf: Mirage globs ``..._fovp*_samp*_<wfe>_realization<n>.fits``.
    grid = f"fovp{_WINGS_SIZE}_samp1" if wings else f"fovp{_PSF_FOV}_samp{_PSF_SAMP}_npsf{_PSF_GRID**2}"
    return f"{instrument}_{det_name}{middle}_{grid}_{_PSF_WFE}_realization{_PSF_REALIZATION}.fits"


def _psf_cards(instrument: str, detector: str) -> list[tuple[str, object, str]]:
    _, det_keyword, filt, pupil = _psf_detector_setup(instrument, detector)
    label = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[instrument]
    return [
        ("INSTRUME", label, "Instrument"),
        ("DETECTOR", det_keyword, "Detector"),
        ("FILTER", filt, "Filter"),
        ("PUPIL", pupil, "Pupil element"),
        ("OPD_FILE", f"OPD_RevW_ote_for_{label}_{_PSF_WFE}.fits.gz", "Pupil OPD source"),
        ("OPDSLICE", _PSF_REALIZATION, "OPD slice index"),
    ]


def _psf_image(ny: int, nx: int, fwhm: float, center: tuple[float, float]) -> np.ndarray:
    """A round core plus faint power-law halo, normalized to sum 1."""
    y, x = np.indices((ny, nx), dtype=np.float64)
    r2 = (y - center[0]) ** 2 + (x - center[1]) ** 2
    sigma = fwhm / 2.3548
    image = np.exp(-r2 / (2 * sigma**2)) + 0.02 * (1.0 + r2 / sigma**2) ** -1.5
    return image / image.sum()


def _psf_library_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """WebbPSF/photutils gridded library: cube (npsf, ny, nx), OVERSAMP, NUM_PSFS, DET_YX<i>.

    Each PSF sums to OVERSAMP**2 (photutils' convention: the PSF sampled at detector pixels
    sums to 1).
    """
    folder = f"mirage_data/{entry.instrument}/gridded_psf_library"
    size = _PSF_FOV * _PSF_SAMP
    # (y, x) positions in WebbPSF's order (x outer); DET_YX<i> holds "(y, x)" as WebbPSF writes.
    positions = np.linspace(0, _NPIX - 1, _PSF_GRID)
    locations = [(float(y), float(x)) for x in positions for y in positions]
    members = []
    for detector in entry.detectors:
        cube = np.empty((len(locations), size, size), dtype=np.float32)
        base_fwhm = 2.2 if detector.endswith("5") else 1.6  # detector pixels
        for i, _ in enumerate(locations):
            fwhm = base_fwhm * _PSF_SAMP * rng.uniform(0.95, 1.05)
            offset = rng.uniform(-0.2, 0.2, 2)
            center = ((size - 1) / 2 + offset[0], (size - 1) / 2 + offset[1])
            cube[i] = _psf_image(size, size, fwhm, center) * _PSF_SAMP**2
        cards = _psf_cards(entry.instrument, detector) + [
            ("OVERSAMP", _PSF_SAMP, "Oversampling factor for FFTs in computation"),
            ("DET_SAMP", _PSF_SAMP, "Oversampling factor for MFT to detector plane"),
            ("FOVPIXEL", _PSF_FOV, "Field of view in pixels (full array)"),
            ("NUM_PSFS", len(locations), "The total number of fiducial PSFs"),
        ]
        for i, (y, x) in enumerate(locations):
            cards.append((f"DET_YX{i}", f"({y:.1f}, {x:.1f})", f"PSF {i} (y,x) detector position"))
        data = _fits_bytes([fits.PrimaryHDU(cube, header=_header(cards))])
        members.append((f"{folder}/{_psf_file_name(entry.instrument, detector)}", data))
    return members


def _psf_wings_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """One wing image per NIRCam detector (and its filter), in extension DET_DIST."""
    folder = f"mirage_data/{entry.instrument}/gridded_psf_library/psf_wings"
    members = []
    for detector in DETECTORS[entry.instrument]:
        cards = _psf_cards(entry.instrument, detector) + [
            ("OVERSAMP", 1, "Oversampling factor"),
            ("FOVPIXEL", _WINGS_SIZE, "Field of view in pixels"),
        ]
        c = (_WINGS_SIZE - 1) / 2
        wing = _psf_image(_WINGS_SIZE, _WINGS_SIZE, 2.0 * rng.uniform(0.95, 1.05), (c, c))
        primary = fits.PrimaryHDU(header=_header(cards))
        det_dist = fits.ImageHDU(wing.astype(np.float32), header=_header(cards), name="DET_DIST")
        data = _fits_bytes([primary, det_dist])
        members.append((f"{folder}/{_psf_file_name(entry.instrument, detector, wings=True)}", data))
    return members


# NIRISS ghosts, SOSS, NIRCam distortion ---------------------------------------------------


def _ghost_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """``niriss_ghost_cen.fits`` (Mirage's default stamp) and one more (name inferred)."""
    folder = f"mirage_data/{entry.instrument}/ghosts"
    members = []
    for name, filt in (("niriss_ghost_cen.fits", "CLEAR"), ("niriss_ghost_cen_f150w.fits", "F150W")):
        y, x = np.indices((63, 63), dtype=np.float64) - 31.0
        r = np.hypot(y, x)
        ring = np.exp(-((r - rng.uniform(14.0, 18.0)) ** 2) / 8.0) + 0.2 * np.exp(-(r**2) / 50.0)
        image = (ring / ring.sum()).astype(np.float32)
        header = _header(
            [("INSTRUME", "NIRISS", "Instrument"), ("FILTER", filt, "Filter"), ("PUPIL", "CLEARP", "Pupil element")]
        )
        members.append((f"{folder}/{name}", _fits_bytes([fits.PrimaryHDU(image, header=header)])))
    return members


def _soss_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """A small SOSS PSF cube as ``.fits`` (primary cube + ``WAV``) and one as ``.npy``.

    Names follow Mirage's soss_trace module (``SOSS_<filter>_PSF.fits``); inferred.
    """
    folder = f"mirage_data/{entry.instrument}/soss_psfs"
    waves = np.linspace(0.85, 2.8, 3)
    cube = np.stack([_psf_image(76, 76, 2.0 + w, (37.5, 37.5)) for w in waves]).astype(np.float32)
    header = _header(
        [("INSTRUME", "NIRISS", "Instrument"), ("FILTER", "CLEAR", "Filter"), ("PUPIL", "GR700XD", "Pupil element")]
    )
    fits_data = _fits_bytes([fits.PrimaryHDU(cube, header=header), fits.ImageHDU(waves.astype(np.float64), name="WAV")])
    npy = io.BytesIO()
    np.save(npy, cube[:2], allow_pickle=False)
    return [
        (f"{folder}/SOSS_CLEAR_PSF.fits", fits_data),
        (f"{folder}/SOSS_CLEAR_PSF_order1_1.npy", npy.getvalue()),
    ]


def _distortion_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Small ASDF distortion files, one per NIRCam detector (names inferred)."""
    folder = f"mirage_data/{entry.instrument}/reference_files/distortion"
    members = []
    for detector in DETECTORS[entry.instrument]:
        crds_name = crds_detector_name(entry.instrument, detector)
        text = (
            "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n"
            "--- !core/asdf-1.1.0\n"
            "asdf_library: !core/software-1.0.0 {name: mirage-data, version: sample}\n"
            "meta:\n"
            f"  author: mirage-data\n  date: '{_FIXED_DATE}'\n"
            f"  description: {_SYNTHETIC}\n"
            f"  instrument: {{name: NIRCAM, detector: {crds_name}}}\n"
            "  reftype: distortion\n  subarray: {name: FULL}\n"
            f"coefficients: [{', '.join(f'{v:.6g}' for v in rng.normal(0, 1e-3, 6))}]\n"
            "...\n"
        )
        members.append((f"{folder}/{crds_name}_FULL_distortion.asdf", text.encode("ascii")))
    return members
