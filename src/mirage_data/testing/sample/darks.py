"""The sample collection's darks: a raw and a linearized full-frame ``.fits.gz`` per exposure.

`write_dark_pair` streams both files group by group through isal gzip (no full cube in
memory), the linearized one derived from the raw one exactly as FORMATS.md section 3 says.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np
from astropy.io import fits
from isal import isal_zlib

from mirage_data.collection.catalog import (
    DETECTORS,
    CatalogEntry,
    crds_detector_name,
)
from mirage_data.io.atomic import atomic_path

from .common import FIXED_DATE, NPIX, SYNTHETIC, seeded_rng

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

# Full-frame geometry and timing (s) of the NIR detectors (all three instruments).
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

# Invented but plausibly named CRDS files recorded in the linearized darks' headers:
# reftype -> (instrument's first file number); the detector's index is added to it.
_CRDS_NUMBERS = {
    "nircam": {"linearity": 52, "mask": 76, "saturation": 89, "superbias": 151},
    "niriss": {"linearity": 11, "mask": 16, "saturation": 15, "superbias": 181},
    "fgs": {"linearity": 10, "mask": 13, "saturation": 9, "superbias": 35},
}


# --------------------------------------------------------------------------------------------
# Writing files safely
# --------------------------------------------------------------------------------------------


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


def _exposure_time(relative_path: str) -> tuple[str, str]:
    """DATE-OBS and TIME-OBS from the collection's dark name (``..._2016-01-09T00h03m58_...``)."""
    m = re.search(r"(\d{4}-\d{2}-\d{2})T(\d{2})h(\d{2})m(\d{2})", relative_path)
    if m is None:
        return "2016-01-01", "00:00:00.000"
    return m.group(1), f"{m.group(2)}:{m.group(3)}:{m.group(4)}.000"


def _stripe_vector(values: np.ndarray) -> np.ndarray:
    """Expand one value per amplifier to one value per pixel across the amplifier stripes."""
    return np.repeat(np.asarray(values, dtype=np.float32), NPIX // _NAMP)


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
        rng = seeded_rng(seed, "detector", instrument, detector)
        n = NPIX
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
            ("DATE", FIXED_DATE, "UTC date file created"),
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
            ("SUBSIZE1", NPIX, "Number of pixels in axis 1 direction"),
            ("SUBSIZE2", NPIX, "Number of pixels in axis 2 direction"),
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
    header["COMMENT"] = SYNTHETIC
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


def write_dark_pair(
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
    rng = seeded_rng(seed, "exposure", raw.relative_path)
    offsets = np.round(rng.normal(0.0, 2.0, (ngroups, _NAMP)) * _QUANTUM) / _QUANTUM
    cube = (1, ngroups, NPIX, NPIX)
    frame = (1, NPIX, NPIX)

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
            noise = rng.integers(0, 256, (NPIX, NPIX), dtype=np.uint8)
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
