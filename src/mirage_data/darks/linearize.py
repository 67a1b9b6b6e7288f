"""Linearize raw darks into Mirage's linearized darks, streaming, without the JWST pipeline.

`linearize_dark` reads a full-frame level-1b raw dark one group at a time, runs it through
the pipeline's dq_init, saturation, superbias, refpix and linearity corrections
(`mirage_data.ramp.corrections`, equal to jwst 3.0's numbers) and writes the linearized dark
Mirage reads (``SCI``, ``SBANDREFPIX``, ``ZEROFRAME``, ``ZEROSBANDREFPIX``, FORMATS.md
section 3) group by group into a file whose headers are written first with the final shapes.
Memory stays at the calibration arrays plus a few frames (a few hundred MB), whatever the size
of the ramp. The output appears under its name only when complete (written under a temporary
name in the same folder, then renamed); on any error no output is left.

`linearize_all` does this for every raw dark of a MIRAGE_DATA folder, several files at once.

Examples
--------
>>> from mirage_data.darks.linearize import linearize_dark
>>> linearize_dark("raw_uncal.fits", "linearized.fits", mask="mask.fits",
...                saturation="sat.fits", superbias="bias.fits", linearity="lin.fits")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from mirage_data import __version__
from mirage_data.calibration.reference_files import (
    HEADER_KEYWORDS,
    REFTYPES,
    Calibration,
    CalibrationDirectory,
    CalibrationError,
    CalibrationPaths,
    ImageLayout,
    image_layout,
    read_image,
    read_linearity,
    read_mask,
    read_rows,
    read_saturation,
    read_superbias,
    resolve_calibration,
)
from mirage_data.collection.catalog import INSTRUMENTS, linearized_name
from mirage_data.io.atomic import atomic_path
from mirage_data.ramp.corrections import FULL_FRAME, CalibrationBuilder, RampLinearizer

__all__ = [
    "DarkFormatError",
    "RawDark",
    "open_raw_dark",
    "linearize_dark",
    "default_output_name",
    "find_raw_darks",
    "LinearizeEvent",
    "LinearizeSummary",
    "linearize_all",
]

_INSTRUMENT_DETECTORS = {
    "NIRCAM": {"NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG", "NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG"},
    "NIRISS": {"NIS"},
    "FGS": {"GUIDER1", "GUIDER2"},
}
_BLOCK = 2880


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
        ``SCI``: (nints, ngroups, 2048, 2048) uint16 (DN).
    zeroframe, pixeldq, groupdq : ImageLayout or None
        Optional ``ZEROFRAME`` (nints, 2048, 2048), ``PIXELDQ``, ``GROUPDQ``.
    instrument, detector : str
        INSTRUME and DETECTOR (CRDS style, e.g. ``NRCA1``).
    nints, ngroups, nframes : int
    fastaxis, slowaxis : int
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


def _int_key(header, key, default=None):
    value = header.get(key, default)
    if value is None:
        raise DarkFormatError(f"primary header has no {key}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DarkFormatError(f"primary header {key} = {value!r} is not an integer") from None


def open_raw_dark(path: str | os.PathLike) -> RawDark:
    """Open and check a raw dark (FORMATS.md section 3).

    Accepted: an uncompressed FITS file with a primary header naming a NIRCam, NIRISS or FGS
    detector and its FASTAXIS/SLOWAXIS, and a ``SCI`` extension of unsigned 16-bit raw counts
    of shape (nints, ngroups, 2048, 2048); optional ``ZEROFRAME``, ``PIXELDQ``, ``GROUPDQ``.

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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)  # truncation: checked below
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError) as exc:
        raise DarkFormatError(f"{path}: cannot read FITS structure ({exc})") from None
    try:
        header = hdul[0].header.copy()
        names = [str(h.header.get("EXTNAME", "")).strip().upper() for h in hdul]
        layouts = {}
        for ext in ("SCI", "ZEROFRAME", "PIXELDQ", "GROUPDQ"):
            if ext in names:
                i = names.index(ext)
                if not isinstance(hdul[i], (fits.ImageHDU, fits.PrimaryHDU)):
                    raise DarkFormatError(f"{path}: extension {ext} is not an image")
                layouts[ext] = image_layout(hdul, i)
        size = path.stat().st_size
    finally:
        hdul.close()
    what = f"raw dark {path}"
    if "SCI" not in layouts:
        raise DarkFormatError(
            f"{what} has no SCI extension (found {', '.join(n or '(unnamed)' for n in names)}); "
            "a raw dark has SCI (nints, ngroups, 2048, 2048) uint16"
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
    if sci.dtype != np.uint16:
        raise DarkFormatError(
            f"{what}: SCI holds {sci.dtype} values (BITPIX = {sci.bitpix}, BZERO = {sci.bzero:g}); "
            "raw darks hold unsigned 16-bit counts (BITPIX = 16, BZERO = 32768)"
        )
    nints, ngroups = sci.shape[:2]
    if nints < 1 or ngroups < 1:
        raise DarkFormatError(f"{what}: SCI has no groups (shape {sci.shape})")
    data_end = sci.offset + int(np.prod(sci.shape)) * 2
    if size < data_end:
        raise DarkFormatError(f"{what} is truncated: {size} bytes, its SCI data end at byte {data_end}")
    for key, n in (("NINTS", nints), ("NGROUPS", ngroups)):
        if key in header and int(header[key]) != n:
            raise DarkFormatError(f"{what}: header {key} = {header[key]} but SCI has {n}")
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    detector = str(header.get("DETECTOR", "")).strip().upper()
    if instrument not in _INSTRUMENT_DETECTORS:
        raise DarkFormatError(f"{what}: INSTRUME = {instrument!r}; NIRCAM, NIRISS or FGS is accepted")
    if detector not in _INSTRUMENT_DETECTORS[instrument]:
        raise DarkFormatError(
            f"{what}: DETECTOR = {detector!r} is not a {instrument} detector "
            f"({', '.join(sorted(_INSTRUMENT_DETECTORS[instrument]))})"
        )
    fast, slow = _int_key(header, "FASTAXIS"), _int_key(header, "SLOWAXIS")
    if {abs(fast), abs(slow)} != {1, 2}:
        raise DarkFormatError(f"{what}: FASTAXIS = {fast}, SLOWAXIS = {slow}; one must be +-1, the other +-2")
    nframes = _int_key(header, "NFRAMES", 1)
    zero = layouts.get("ZEROFRAME")
    if zero is not None and (zero.shape != (nints,) + FULL_FRAME or zero.dtype != np.uint16):
        raise DarkFormatError(
            f"{what}: ZEROFRAME is {zero.dtype} of shape {zero.shape}; expected uint16 {(nints,) + FULL_FRAME}"
        )
    pdq = layouts.get("PIXELDQ")
    if pdq is not None and (pdq.shape != FULL_FRAME or pdq.dtype.kind not in "iu"):
        raise DarkFormatError(f"{what}: PIXELDQ is {pdq.dtype} of shape {pdq.shape}; expected integers {FULL_FRAME}")
    gdq = layouts.get("GROUPDQ")
    if gdq is not None and (gdq.shape != sci.shape or gdq.dtype.kind not in "iu"):
        raise DarkFormatError(f"{what}: GROUPDQ is {gdq.dtype} of shape {gdq.shape}; expected integers {sci.shape}")
    return RawDark(path, header, sci, zero, pdq, gdq, instrument, detector, nints, ngroups, nframes, fast, slow)


# ---------------------------------------------------------------------------------------------
# Output file


_STRUCTURAL = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "BZERO",
    "BSCALE",
    "CHECKSUM",
    "DATASUM",
    "XTENSION",
    "EXTNAME",
    "END",
}


@dataclass
class _Extension:
    name: str
    shape: tuple[int, ...]
    disk: np.dtype
    bitpix: int
    bzero: int = 0
    offset: int = 0  # of the data

    @property
    def plane_bytes(self) -> int:
        return int(np.prod(self.shape[-2:])) * self.disk.itemsize

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.disk.itemsize


def _image_header(ext: _Extension) -> fits.Header:
    h = fits.Header()
    h["XTENSION"] = ("IMAGE", "image extension")
    h["BITPIX"] = ext.bitpix
    h["NAXIS"] = len(ext.shape)
    for k, n in enumerate(reversed(ext.shape), start=1):
        h[f"NAXIS{k}"] = n
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    if ext.bzero:
        h["BZERO"] = ext.bzero
        h["BSCALE"] = 1
    h["EXTNAME"] = ext.name
    if ext.disk.kind == "f":
        h["BUNIT"] = "DN"
    return h


def _pad(n: int) -> int:
    return -n % _BLOCK


class _OutputFile:
    """A FITS file written headers first, data filled in later at known offsets."""

    def __init__(self, path: Path, primary: fits.Header, extensions: list[_Extension]) -> None:
        self.path = path
        self.extensions = {e.name: e for e in extensions}
        headers = [(0, primary.tostring().encode("ascii"))]
        pos = len(headers[0][1])
        for e in extensions:
            text = _image_header(e).tostring().encode("ascii")
            headers.append((pos, text))
            e.offset = pos + len(text)
            pos = e.offset + e.nbytes + _pad(e.nbytes)
        self.size = pos
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                # reserves the space (a full disk fails now, not midway) and writes faster
                os.posix_fallocate(self.fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                os.ftruncate(self.fd, self.size)
            for offset, text in headers:  # unwritten data stays zero: also the FITS padding
                os.pwrite(self.fd, text, offset)
        except BaseException:
            os.close(self.fd)
            path.unlink(missing_ok=True)
            raise

    def write_rows(self, name: str, index: int, rows: slice, data: np.ndarray) -> None:
        """Write rows *rows* of the *index*-th 2-D plane (counting over leading axes)."""
        e = self.extensions[name]
        data = np.ascontiguousarray(data, dtype=e.disk)  # converts to the FITS byte order
        row_bytes = e.shape[-1] * e.disk.itemsize
        offset = e.offset + index * e.plane_bytes + (rows.start or 0) * row_bytes
        buf = memoryview(data.reshape(-1).view(np.uint8))
        done = 0
        while done < len(buf):
            done += os.pwrite(self.fd, buf[done:], offset + done)

    def write_plane(self, name: str, index: int, data: np.ndarray) -> None:
        """Write the *index*-th 2-D plane of extension *name*."""
        self.write_rows(name, index, slice(0, data.shape[0]), data)

    def sink(self, name: str, index: int, also: str | None = None, also_index: int = 0):
        """A callable(rows, tile) writing tiles of a plane (and of a second one, if *also*)."""

        def write(rows: slice, tile: np.ndarray) -> None:
            self.write_rows(name, index, rows, tile)
            if also is not None:
                self.write_rows(also, also_index, rows, tile)

        write.dtype = self.extensions[name].disk  # tiles come in the file's byte order
        return write

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _primary_header(raw: RawDark, names: Mapping[str, str], zero_source: str) -> fits.Header:
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = 8
    h["NAXIS"] = 0
    h["EXTEND"] = True
    for card in raw.header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key.startswith("NAXIS") or key == "":
            continue
        try:
            h.append(card, end=True)
        except (ValueError, fits.VerifyError):
            continue
    mirage = {
        "READPATT": raw.header.get("READPATT", ""),
        "NINTS": raw.nints,
        "NGROUPS": raw.ngroups,
        "NFRAMES": raw.nframes,
        "NSKIP": int(raw.header.get("NSKIP", 0)),
        "DETECTOR": raw.detector,
        "INSTRUME": raw.instrument,
        "FASTAXIS": raw.fastaxis,
        "SLOWAXIS": raw.slowaxis,
    }
    for key, value in mirage.items():
        h[key] = value
    comments = {
        "R_MASK": "mask file",
        "R_SATURA": "saturation file",
        "R_SUPERB": "superbias file",
        "R_LINEAR": "linearity file",
    }
    for key, name in names.items():
        h[key] = (name, comments[key])
    h["S_DQINIT"] = "COMPLETE"
    h["S_SATURA"] = "COMPLETE"
    h["S_SUPERB"] = "COMPLETE"
    h["S_REFPIX"] = "COMPLETE"
    h["S_LINEAR"] = "COMPLETE"
    h["LINSOFT"] = (f"mirage-data {__version__}", "software that linearized this dark")
    h["LINEQUIV"] = ("jwst 3.0", "pipeline whose numbers these equal")
    h["LINRAW"] = (raw.path.name, "raw dark linearized")
    h["ZEROSRC"] = (zero_source, "ZEROFRAME from: GROUP0 of SCI, or raw ZEROFRAME")
    return h


# ---------------------------------------------------------------------------------------------
# One dark


def linearize_dark(
    raw_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    saturation: str | os.PathLike | None = None,
    superbias: str | os.PathLike | None = None,
    linearity: str | os.PathLike | None = None,
    calibration: Calibration | CalibrationPaths | None = None,
    calibration_dir: str | os.PathLike | CalibrationDirectory | None = None,
    use_crds: bool = True,
    include_dq: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    fsync: bool = False,
    tile_rows: int = 128,
) -> Path:
    """Linearize one full-frame raw dark into a Mirage linearized dark.

    Parameters
    ----------
    raw_path : path-like
        Level-1b raw dark (``SCI`` uint16 (nints, ngroups, 2048, 2048), DN).
    output_path : path-like
        The linearized dark to write: ``SCI`` and ``SBANDREFPIX`` float32 (nints, ngroups,
        2048, 2048), ``ZEROFRAME`` and ``ZEROSBANDREFPIX`` float32 (nints, 2048, 2048), all DN.
    mask, saturation, superbias, linearity : path-like, optional
        JWST MASK, SATURATION, SUPERBIAS and LINEARITY reference files. Files not given are
        found in *calibration_dir*, else through CRDS (if *use_crds*).
    calibration : Calibration or CalibrationPaths, optional
        Reference files already read (not modified) or chosen (instead of the four paths).
    calibration_dir : path-like or CalibrationDirectory, optional
        Folder of reference files, matched by REFTYPE and DETECTOR.
    use_crds : bool
        Ask CRDS for reference files not otherwise given.
    include_dq : bool
        Also write ``PIXELDQ`` (uint32) and ``GROUPDQ`` (uint8) as the pipeline would have them.
    overwrite : bool
        Replace an existing output (else an existing output is an error).
    progress : callable(done_groups, total_groups), optional
        Called after each group.
    threads : int, optional
        Threads sharing each group's work (default: 2, or 1 on a one-CPU machine).
    fsync : bool
        Flush the output to disk before renaming it into place (survives a power cut).
    tile_rows : int
        Rows per processing tile.

    Returns
    -------
    Path
        *output_path*.

    Raises
    ------
    DarkFormatError, CalibrationError, FileExistsError, FileNotFoundError
        Nothing is written when the input is rejected, and no output is left on any error.

    Notes
    -----
    ZEROFRAME: for one-frame groups (RAPID, NISRAPID, FGSRAPID) it is group 0 of each
    integration, as Mirage makes it; for group-averaged readouts the raw ``ZEROFRAME`` is
    linearized as a one-group ramp (Mirage's way), or group 0 is used if the file has none.
    """
    output = Path(output_path)
    raw = open_raw_dark(raw_path)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (pass overwrite=True / --overwrite to replace it)")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist")
    engine, names = _prepare(
        raw,
        calibration,
        include_dq,
        tile_rows,
        threads,
        dict(
            mask=mask,
            saturation=saturation,
            superbias=superbias,
            linearity=linearity,
            calibration_dir=calibration_dir,
            use_crds=use_crds,
        ),
    )

    zero_from_file = raw.nframes > 1 and raw.zeroframe is not None
    shape4 = raw.sci.shape
    shape3 = (raw.nints,) + FULL_FRAME
    f4 = np.dtype(">f4")
    extensions = [
        _Extension("SCI", shape4, f4, -32),
        _Extension("SBANDREFPIX", shape4, f4, -32),
        _Extension("ZEROFRAME", shape3, f4, -32),
        _Extension("ZEROSBANDREFPIX", shape3, f4, -32),
    ]
    if include_dq:
        extensions += [
            _Extension("PIXELDQ", FULL_FRAME, np.dtype(">u4"), 32, 2**31),
            _Extension("GROUPDQ", shape4, np.dtype("u1"), 8),
        ]
    primary = _primary_header(raw, names, "ZEROFRAME" if zero_from_file else "GROUP0")
    try:
        with atomic_path(output, durable=fsync, make_parents=False) as tmp:
            out = _OutputFile(tmp, primary, extensions)
            try:
                _stream(raw, engine, out, include_dq, zero_from_file, progress)
            finally:
                out.close()
    finally:
        engine.close()
    return output


def _prepare(raw: RawDark, calibration, include_dq: bool, tile_rows: int, threads: int | None, find: dict):
    """Read, check and prepare the reference data one file at a time (bounded memory)."""
    pixeldq = read_image(raw.pixeldq, np.uint32) if raw.pixeldq is not None else None
    builder = CalibrationBuilder(FULL_FRAME, pixeldq=pixeldq, keep_pixeldq=include_dq, group_averaged=raw.nframes > 1)
    del pixeldq
    if isinstance(calibration, Calibration):
        given = calibration
        copy = True  # the caller's arrays: leave them as they are

        def get(reftype):
            return getattr(given, reftype)

    else:
        paths = calibration or resolve_calibration(raw.header, **find)
        copy = False
        readers = {
            "mask": read_mask,
            "saturation": read_saturation,
            "superbias": read_superbias,
            "linearity": read_linearity,
        }

        def get(reftype):
            return readers[reftype](
                paths.path(reftype), detector=raw.detector, instrument=raw.instrument, name=paths.name(reftype)
            )

    names = {}
    for reftype in REFTYPES:
        data = get(reftype)
        names[HEADER_KEYWORDS[reftype]] = data.name
        if reftype == "mask":
            builder.add_mask(data.dq)
        elif reftype == "saturation":
            builder.add_saturation(data.threshold, data.dq, copy=copy)
        elif reftype == "superbias":
            builder.add_superbias(data.bias, data.dq, copy=copy)
        else:
            if data.has_inverse and raw.nframes > 1:
                raise CalibrationError(
                    f"{raw.path} averages {raw.nframes} frames per group and {data.path} has "
                    "INV_COEFFS: the pipeline then applies its read-level linearity correction, which "
                    "this linearization does not implement (one-frame readouts such as RAPID are supported)"
                )
            builder.add_linearity(data.coeffs, data.dq, copy=copy)
        del data  # let the file's arrays go before the next file is read
    if threads is None:
        threads = min(2, os.cpu_count() or 1)
    engine = RampLinearizer(
        builder.build(),
        fastaxis=raw.fastaxis,
        slowaxis=raw.slowaxis,
        ngroups=raw.ngroups,
        nframes=raw.nframes,
        tile_rows=tile_rows,
        threads=threads,
    )
    return engine, names


def _stream(
    raw: RawDark, engine: RampLinearizer, out: _OutputFile, include_dq: bool, zero_from_file: bool, progress
) -> None:
    ny, nx = FULL_FRAME
    plane = np.empty(FULL_FRAME, np.uint16)
    buffer = plane.reshape(-1).view(raw.sci.disk_dtype)  # read in place: uint16 either way
    gdq_in = np.empty(FULL_FRAME, np.uint8) if raw.groupdq is not None else None
    gdq_buffer = np.empty(ny * nx, raw.groupdq.disk_dtype) if raw.groupdq is not None else None
    if include_dq:
        out.write_plane("PIXELDQ", 0, engine.pixeldq ^ np.uint32(2**31))  # FITS uint32: BZERO 2**31
    fd = os.open(raw.path, os.O_RDONLY)
    try:
        total = raw.nints * raw.ngroups
        for i in range(raw.nints):
            engine.start_integration()
            for g in range(raw.ngroups):
                k = i * raw.ngroups + g
                read_rows(fd, raw.sci, k * ny, plane, buffer)
                if gdq_in is not None:
                    read_rows(fd, raw.groupdq, k * ny, gdq_in, gdq_buffer)
                also_zero = g == 0 and not zero_from_file  # one-frame groups: ZEROFRAME is group 0
                sci = out.sink("SCI", k, "ZEROFRAME" if also_zero else None, i)
                sb = out.sink("SBANDREFPIX", k, "ZEROSBANDREFPIX" if also_zero else None, i)
                for fg, gdq in engine.process_group(plane, sci, sb, gdq_in):
                    if include_dq:
                        out.write_plane("GROUPDQ", i * raw.ngroups + fg, gdq)
                if progress is not None:
                    progress(k + 1, total)
            for fg, gdq in engine.finish_integration():
                if include_dq:
                    out.write_plane("GROUPDQ", i * raw.ngroups + fg, gdq)
        if zero_from_file:
            # Mirage linearizes the raw zero frames as a one-group ramp of their own
            zero_engine = engine.for_ngroups(1)
            try:
                for i in range(raw.nints):
                    read_rows(fd, raw.zeroframe, i * ny, plane, buffer)
                    zero_engine.start_integration()
                    zero_engine.process_group(plane, out.sink("ZEROFRAME", i), out.sink("ZEROSBANDREFPIX", i))
                    zero_engine.finish_integration()
            finally:
                zero_engine.close()
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# All darks of a MIRAGE_DATA folder


def _mirage_data_root(mirage_data: str | os.PathLike | None) -> Path:
    if mirage_data is None:
        mirage_data = os.environ.get("MIRAGE_DATA")
        if not mirage_data:
            raise FileNotFoundError("no MIRAGE_DATA folder given and the MIRAGE_DATA environment variable is not set")
    root = Path(mirage_data).expanduser().absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"MIRAGE_DATA folder {root} does not exist")
    if not any((root / inst).is_dir() for inst in INSTRUMENTS) and (root / "mirage_data").is_dir():
        root = root / "mirage_data"
    return root


def default_output_name(raw_path: str | os.PathLike, instrument: str | None = None) -> str:
    """File name of the linearized dark of a raw dark, in the collection's naming.

    >>> default_output_name("NRCNRCA1-DARK-6008_1_481_SE_2016-01-09T00h03m58_level1b_uncal.fits", "nircam")
    'Linearized_Dark_and_SBRefpix_NRCNRCA1-DARK-6008_1_481_SE_2016-01-09T00h03m58_uncal.fits'

    Parameters
    ----------
    raw_path : path-like
    instrument : str, optional
        nircam, niriss or fgs (default: the file's INSTRUME keyword).
    """
    path = Path(raw_path)
    if instrument is None:
        try:
            instrument = str(fits.getval(path, "INSTRUME", 0))
        except (OSError, KeyError, IndexError, ValueError):
            instrument = ""
    instrument = instrument.strip().lower()
    name = path.name if path.name.endswith((".fits", ".fits.gz")) else path.name + ".fits"
    if instrument not in INSTRUMENTS:
        return name[: -len(".fits")] + "_linearized.fits" if name.endswith(".fits") else name + "_linearized"
    return PurePosixPath(linearized_name(f"{instrument}/darks/raw/{name}")).name


def find_raw_darks(mirage_data: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """Raw darks of a MIRAGE_DATA folder and the paths of their linearized counterparts.

    Raw darks are the ``*.fits`` files below ``<instrument>/darks/raw/``; each output path is
    the collection's name for the linearized dark (`mirage_data.catalog.linearized_name`).

    Returns
    -------
    list of (raw path, linearized path)
    """
    root = _mirage_data_root(mirage_data)
    pairs = []
    for inst in INSTRUMENTS:
        folder = root / inst / "darks" / "raw"
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.fits")):
            if path.name.startswith("."):
                continue
            rel = PurePosixPath(path.relative_to(root).as_posix())
            pairs.append((path, root / linearized_name(str(rel))))
    return pairs


@dataclass(frozen=True)
class LinearizeEvent:
    """Progress of `linearize_all`.

    Attributes
    ----------
    kind : str
        ``start``, ``done``, ``skipped`` (output exists) or ``failed``.
    raw, output : Path
    index, total : int
        Position of the file (1-based) among all raw darks found.
    seconds : float
        Time taken (``done``).
    error : str
        What went wrong (``failed``).
    """

    kind: str
    raw: Path
    output: Path
    index: int
    total: int
    seconds: float = 0.0
    error: str = ""


@dataclass
class LinearizeSummary:
    """Outcome of `linearize_all`: lists of output paths, and (raw path, error) pairs."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _job(raw: str, output: str, paths: CalibrationPaths | None, options: dict) -> float:
    t0 = time.perf_counter()
    linearize_dark(raw, output, calibration=paths, **options)
    return time.perf_counter() - t0


def linearize_all(
    mirage_data: str | os.PathLike | None = None,
    *,
    calibration_dir: str | os.PathLike | None = None,
    use_crds: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
    include_dq: bool = False,
    fsync: bool = True,
    progress: Callable[[LinearizeEvent], None] | None = None,
) -> LinearizeSummary:
    """Linearize every raw dark of a MIRAGE_DATA folder into ``darks/linearized``.

    Outputs that exist are skipped (an output only exists once complete, see
    `linearize_dark`), so an interrupted run resumes where it stopped. Files are linearized in
    parallel worker processes; a failure of one file is reported and the others go on.

    Parameters
    ----------
    mirage_data : path-like, optional
        The MIRAGE_DATA folder (default: the ``MIRAGE_DATA`` environment variable).
    calibration_dir : path-like, optional
        Folder of reference files matched by REFTYPE and DETECTOR (else CRDS is asked).
    use_crds : bool
        Ask CRDS for reference files not found otherwise.
    jobs : int, optional
        Files at once (default: the number of CPUs, at most 4; each needs about 0.5 GB).
    overwrite : bool
        Linearize again files whose output exists.
    include_dq : bool
        Also write PIXELDQ and GROUPDQ.
    fsync : bool
        Flush each output to disk before renaming it into place (default: yes, so that a
        finished file survives a power cut and is never mistaken for one after it).
    progress : callable(LinearizeEvent), optional
        Called in this process as files start, finish, are skipped or fail.

    Returns
    -------
    LinearizeSummary
    """
    pairs = find_raw_darks(mirage_data)
    summary = LinearizeSummary()
    total = len(pairs)
    emit = progress or (lambda event: None)
    directory = CalibrationDirectory(calibration_dir) if calibration_dir is not None else None
    todo = []
    for index, (raw, output) in enumerate(pairs, start=1):
        if output.exists() and not overwrite:
            summary.skipped.append(output)
            emit(LinearizeEvent("skipped", raw, output, index, total))
            continue
        try:
            header = open_raw_dark(raw).header
            paths = resolve_calibration(header, calibration_dir=directory, use_crds=use_crds)
            output.parent.mkdir(parents=True, exist_ok=True)
        except (DarkFormatError, CalibrationError, OSError) as exc:
            summary.failed.append((raw, str(exc)))
            emit(LinearizeEvent("failed", raw, output, index, total, error=str(exc)))
            continue
        todo.append((index, raw, output, paths))
    if not todo:
        return summary
    jobs = jobs or max(1, min(os.cpu_count() or 1, 4))
    options = {"include_dq": include_dq, "overwrite": overwrite, "fsync": fsync}
    # spawn: workers must not inherit locks of threads the caller may be running
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(todo))
    if workers > 1:
        options["threads"] = 1  # the processes already share the CPUs
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = list(todo)
        running = {}

        def submit_next() -> None:
            index, raw, output, paths = pending.pop(0)
            emit(LinearizeEvent("start", raw, output, index, total))
            running[pool.submit(_job, str(raw), str(output), paths, options)] = (index, raw, output)

        # keep exactly `workers` files in flight, so that "start" means started
        while pending and len(running) < workers:
            submit_next()
        while running:
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index, raw, output = running.pop(future)
                try:
                    seconds = future.result()
                except Exception as exc:  # reported per file; the other files go on
                    message = str(exc) or type(exc).__name__
                    summary.failed.append((raw, message))
                    emit(LinearizeEvent("failed", raw, output, index, total, error=message))
                else:
                    summary.done.append(output)
                    emit(LinearizeEvent("done", raw, output, index, total, seconds=seconds))
                if pending:
                    submit_next()
    return summary
