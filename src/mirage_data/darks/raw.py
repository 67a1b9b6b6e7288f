"""Raw darks (level-1b ramps) opened for streaming: checked headers, image layouts, geometry.

`open_raw_dark` reads only headers: it checks that the file is a complete, uncompressed FITS
file (every extension its headers declare is there, padding included), that ``SCI`` is a 4-D
ramp of unsigned 16-bit counts or float32 DN (as a ``RampModel`` saves it), and where the
images lie, so that the data can then be read group by group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.io.fits import FitsLayoutError, ImageLayout, open_layouts
from mirage_data.ramp.geometry import FULL_DETECTOR, FrameGeometry

__all__ = ["DarkFormatError", "RawDark", "open_raw_dark", "INSTRUMENT_DETECTORS", "FULL_FRAME"]

INSTRUMENT_DETECTORS = {
    "NIRCAM": {"NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG", "NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG"},
    "NIRISS": {"NIS"},
    "FGS": {"GUIDER1", "GUIDER2"},
}

#: Frame shape of the raw darks accepted today.
FULL_FRAME = (FULL_DETECTOR, FULL_DETECTOR)

#: Value types accepted for SCI and ZEROFRAME: raw counts, or float32 DN (a saved RampModel).
_RAW_TYPES = (np.dtype(np.uint16), np.dtype(np.float32))


class DarkFormatError(ValueError):
    """A raw dark that cannot be linearized (wrong shape, type, layout or header)."""


@dataclass
class RawDark:
    """A raw dark opened for streaming: its header and where its images lie in the file.

    Attributes
    ----------
    path : Path
    header : astropy.io.fits.Header
        Primary header.
    sci : ImageLayout
        ``SCI``: (nints, ngroups, ny, nx), uint16 or float32 (DN).
    zeroframe, pixeldq, groupdq : ImageLayout or None
        Optional ``ZEROFRAME`` (nints, ny, nx), ``PIXELDQ``, ``GROUPDQ``.
    instrument, detector : str
        INSTRUME and DETECTOR (CRDS style, e.g. ``NRCA1``).
    nints, ngroups, nframes : int
    fastaxis, slowaxis : int
    geometry : FrameGeometry
        Frame shape, reference borders and amplifiers (from the header).
    """

    path: Path
    header: fits.Header
    sci: ImageLayout
    zeroframe: ImageLayout | None
    pixeldq: ImageLayout | None
    groupdq: ImageLayout | None
    instrument: str
    detector: str
    nints: int
    ngroups: int
    nframes: int
    fastaxis: int
    slowaxis: int
    geometry: FrameGeometry

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.sci.shape[-2:])


def _int_key(header, key, default=None):
    value = header.get(key, default)
    if value is None:
        raise DarkFormatError(f"primary header has no {key}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DarkFormatError(f"primary header {key} = {value!r} is not an integer") from None


def _geometry(header, shape: tuple[int, int], fast: int, slow: int) -> FrameGeometry:
    """The frame geometry from SUBSTRT1/2 and NOUTPUTS (a full frame when they are absent)."""
    ny, nx = shape
    try:
        return FrameGeometry.from_subarray(
            xstart=_int_key(header, "SUBSTRT1", 1),
            ystart=_int_key(header, "SUBSTRT2", 1),
            xsize=nx,
            ysize=ny,
            noutputs=_int_key(header, "NOUTPUTS", 4),
            fastaxis=fast,
            slowaxis=slow,
        )
    except ValueError as exc:
        raise DarkFormatError(f"frame geometry: {exc}") from None


def open_raw_dark(path: str | os.PathLike) -> RawDark:
    """Open and check a raw dark (FORMATS.md section 3).

    Accepted: a complete, uncompressed FITS file with a primary header naming a NIRCam,
    NIRISS or FGS detector and its FASTAXIS/SLOWAXIS, and a ``SCI`` extension of unsigned
    16-bit counts or float32 DN of shape (nints, ngroups, 2048, 2048); optional ``ZEROFRAME``
    (same type), ``PIXELDQ``, ``GROUPDQ``.

    Raises
    ------
    DarkFormatError
        With what was wrong and what is accepted.
    FileNotFoundError
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"raw dark {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        raise DarkFormatError(f"{path} is gzip-compressed; decompress it first (streaming needs a plain .fits file)")
    if magic != b"SIMPLE":
        raise DarkFormatError(f"{path} is not a FITS file")
    what = f"raw dark {path}"
    try:
        header, names, layouts = open_layouts(path, ("SCI", "ZEROFRAME", "PIXELDQ", "GROUPDQ"))
    except FitsLayoutError as exc:
        raise DarkFormatError(f"{exc}; a raw dark must be complete") from None
    except (OSError, ValueError) as exc:
        raise DarkFormatError(f"{path}: cannot read FITS structure ({exc})") from None
    accepted = "SCI (nints, ngroups, 2048, 2048) of uint16 counts or float32 DN"
    if "SCI" not in layouts:
        raise DarkFormatError(
            f"{what} has no SCI extension (found {', '.join(n or '(unnamed)' for n in names)}); "
            f"a raw dark has {accepted}"
        )
    sci = layouts["SCI"]
    if len(sci.shape) != 4:
        raise DarkFormatError(f"{what}: SCI has shape {sci.shape}; a raw ramp is 4-D (nints, ngroups, 2048, 2048)")
    if sci.shape[-2:] != FULL_FRAME:
        raise DarkFormatError(
            f"{what} is a subarray ramp (SUBARRAY = {header.get('SUBARRAY')!r}, frames "
            f"{sci.shape[-2]} x {sci.shape[-1]}); only full-frame (2048 x 2048) raw darks can be "
            "linearized (the reference-pixel correction needs the full frame)"
        )
    if sci.dtype not in _RAW_TYPES:
        raise DarkFormatError(
            f"{what}: SCI holds {sci.dtype} values (BITPIX = {sci.bitpix}, BZERO = {sci.bzero:g}); raw darks hold "
            "unsigned 16-bit counts (BITPIX = 16, BZERO = 32768) or float32 DN (BITPIX = -32)"
        )
    nints, ngroups = sci.shape[:2]
    if nints < 1 or ngroups < 1:
        raise DarkFormatError(f"{what}: SCI has no groups (shape {sci.shape})")
    for key, n in (("NINTS", nints), ("NGROUPS", ngroups)):
        if key in header and int(header[key]) != n:
            raise DarkFormatError(f"{what}: header {key} = {header[key]} but SCI has {n}")
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    detector = str(header.get("DETECTOR", "")).strip().upper()
    if instrument not in INSTRUMENT_DETECTORS:
        raise DarkFormatError(f"{what}: INSTRUME = {instrument!r}; NIRCAM, NIRISS or FGS is accepted")
    if detector not in INSTRUMENT_DETECTORS[instrument]:
        raise DarkFormatError(
            f"{what}: DETECTOR = {detector!r} is not a {instrument} detector "
            f"({', '.join(sorted(INSTRUMENT_DETECTORS[instrument]))})"
        )
    fast, slow = _int_key(header, "FASTAXIS"), _int_key(header, "SLOWAXIS")
    if {abs(fast), abs(slow)} != {1, 2}:
        raise DarkFormatError(f"{what}: FASTAXIS = {fast}, SLOWAXIS = {slow}; one must be +-1, the other +-2")
    nframes = _int_key(header, "NFRAMES", 1)
    frame = tuple(sci.shape[-2:])
    zero = layouts.get("ZEROFRAME")
    if zero is not None and (zero.shape != (nints,) + frame or zero.dtype not in _RAW_TYPES):
        raise DarkFormatError(
            f"{what}: ZEROFRAME is {zero.dtype} of shape {zero.shape}; expected uint16 or float32 {(nints,) + frame}"
        )
    pdq = layouts.get("PIXELDQ")
    if pdq is not None and (pdq.shape != frame or pdq.dtype.kind not in "iu"):
        raise DarkFormatError(f"{what}: PIXELDQ is {pdq.dtype} of shape {pdq.shape}; expected integers {frame}")
    gdq = layouts.get("GROUPDQ")
    if gdq is not None and (gdq.shape != sci.shape or gdq.dtype.kind not in "iu"):
        raise DarkFormatError(f"{what}: GROUPDQ is {gdq.dtype} of shape {gdq.shape}; expected integers {sci.shape}")
    geometry = _geometry(header, frame, fast, slow)
    return RawDark(
        path, header, sci, zero, pdq, gdq, instrument, detector, nints, ngroups, nframes, fast, slow, geometry
    )
