"""JWST calibration reference files for dark linearization: finding, checking and reading them.

The four reference types the linearization needs, in the FITS layouts `stdatamodels` defines
(``MaskModel``, ``SaturationModel``, ``SuperBiasModel``, ``LinearityModel``):

=========== ============================= ===========================================
REFTYPE     extensions read               meaning
=========== ============================= ===========================================
MASK        ``DQ``, ``DQ_DEF``            bad-pixel flags
SATURATION  ``SCI``, ``DQ``, ``DQ_DEF``   saturation level (DN)
SUPERBIAS   ``SCI``, ``DQ``, ``DQ_DEF``   bias level (DN)
LINEARITY   ``COEFFS``, ``DQ``, ``DQ_DEF`` polynomial coefficients (raw DN -> linear DN)
=========== ============================= ===========================================

DQ arrays are translated to the pipeline's flag values through DQ_DEF, as stdatamodels does on
opening. Every file is checked: its REFTYPE (when present), its INSTRUME and DETECTOR against
the raw dark's, and its shape (the raw dark's frames; full frame, 2048 x 2048, by default).
Images are read in row chunks straight into native arrays so that reading them costs no more
memory than the result.

Reference files are found in three ways (`resolve_calibration`): paths given by the caller; a
folder of reference files matched by their REFTYPE and DETECTOR keywords
(`CalibrationDirectory`); or CRDS (`crds_references`), which needs a CRDS server or a local
CRDS cache (``CRDS_PATH``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.io.fits import image_layout, read_image
from mirage_data.ramp.geometry import FULL_DETECTOR

from .dq_def import apply_dq_definitions

__all__ = [
    "REFTYPES",
    "CalibrationError",
    "MaskData",
    "SaturationData",
    "SuperbiasData",
    "LinearityData",
    "Calibration",
    "CalibrationPaths",
    "read_mask",
    "read_saturation",
    "read_superbias",
    "read_linearity",
    "read_calibration",
    "CalibrationDirectory",
    "crds_parameters",
    "crds_references",
    "resolve_calibration",
]

#: The reference types used, in pipeline order.
REFTYPES = ("mask", "saturation", "superbias", "linearity")

#: Header keywords naming each reference file in a linearized dark (the pipeline's names).
HEADER_KEYWORDS = {"mask": "R_MASK", "saturation": "R_SATURA", "superbias": "R_SUPERB", "linearity": "R_LINEAR"}

#: Frame shape of full-frame reference files.
FULL_FRAME = (FULL_DETECTOR, FULL_DETECTOR)

_EXTENSIONS = {
    "mask": ("DQ",),
    "saturation": ("SCI", "DQ"),
    "superbias": ("SCI", "DQ"),
    "linearity": ("COEFFS", "DQ"),
}


class CalibrationError(ValueError):
    """A reference file that is missing, unreadable, or does not fit the raw dark."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


# ---------------------------------------------------------------------------------------------
# Reading reference files


@dataclass
class _Opened:
    path: Path
    header: fits.Header
    arrays: dict
    dq_def: np.ndarray | None
    extensions: list


def _norm(value) -> str:
    return str(value).strip().upper() if value is not None else ""


def _open_reference(
    path: str | os.PathLike,
    reftype: str,
    *,
    detector: str | None,
    instrument: str | None,
    optional: tuple[str, ...] = ("DQ",),
    shape: tuple[int, int] = FULL_FRAME,
) -> _Opened:
    """Open, check and read a reference file of *reftype*."""
    path = Path(path)
    what = f"{reftype.upper()} reference file {path}"
    if not path.is_file():
        raise CalibrationError(f"{what}: no such file")
    wanted = _EXTENSIONS[reftype]
    try:
        compressed = _is_gzip(path)
        with fits.open(path, memmap=not compressed, lazy_load_hdus=False) as hdul:
            header = hdul[0].header.copy()
            ftype = _norm(header.get("REFTYPE"))
            if ftype and ftype != reftype.upper():
                raise CalibrationError(
                    f"{what} is a {ftype} reference file (REFTYPE = {ftype!r}); a {reftype.upper()} file is needed here"
                )
            file_det, file_inst = _norm(header.get("DETECTOR")), _norm(header.get("INSTRUME"))
            if detector and file_det and file_det not in (_norm(detector), "ANY", "N/A"):
                raise CalibrationError(f"{what} is for detector {file_det}, but the raw dark is from {_norm(detector)}")
            if instrument and file_inst and file_inst != _norm(instrument):
                raise CalibrationError(
                    f"{what} is for instrument {file_inst}, but the raw dark is from {_norm(instrument)}"
                )
            names = [_norm(h.header.get("EXTNAME")) for h in hdul]
            arrays = {}
            for ext in wanted:
                if ext not in names:
                    if ext in optional:
                        continue
                    raise CalibrationError(
                        f"{what} has no {ext} extension (a {reftype.upper()} file has "
                        f"{', '.join(wanted)}; found {', '.join(n or '(unnamed)' for n in names)})"
                    )
                index = names.index(ext)
                hdu = hdul[index]
                if not isinstance(hdu, (fits.ImageHDU, fits.PrimaryHDU)) or hdu.header.get("NAXIS", 0) == 0:
                    raise CalibrationError(f"{what}: extension {ext} holds no image")
                ndim = 3 if ext == "COEFFS" else 2
                found = tuple(int(hdu.header[f"NAXIS{k}"]) for k in range(hdu.header["NAXIS"], 0, -1))
                if len(found) != ndim or found[-2:] != tuple(shape) or (ndim == 3 and found[0] < 2):
                    expect = f"(ncoeffs >= 2, {shape[0]}, {shape[1]})" if ndim == 3 else f"({shape[0]}, {shape[1]})"
                    raise CalibrationError(
                        f"{what}: {ext} has shape {found}; a file with {ext} of shape {expect} is needed "
                        "(the frames of the raw dark)"
                    )
                dtype = np.uint32 if ext == "DQ" else np.float32
                if compressed:
                    arrays[ext] = np.asarray(hdu.data, dtype=dtype)
                else:
                    arrays[ext] = read_image(image_layout(hdul, index), dtype)
            dq_def = None
            if "DQ_DEF" in names:
                table = hdul[names.index("DQ_DEF")].data
                if table is not None and len(table) and {"VALUE", "NAME"} <= {c.upper() for c in table.names}:
                    dq_def = np.array(
                        [(int(r["VALUE"]), str(r["NAME"])) for r in table],
                        dtype=[("VALUE", np.uint32), ("NAME", "U40")],
                    )
    except CalibrationError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{what}: cannot be read as a FITS reference file ({exc})") from None
    if "DQ" in wanted and "DQ" not in arrays:
        arrays["DQ"] = np.zeros(shape, np.uint32)  # stdatamodels' default
    if "DQ" in arrays:
        arrays["DQ"] = apply_dq_definitions(arrays["DQ"], dq_def, in_place=True)
    return _Opened(path, header, arrays, dq_def, names)


def _header_name(path: Path, crds_name: str | None) -> str:
    return crds_name or path.name


@dataclass
class MaskData:
    """A MASK reference file: ``dq`` (uint32, standard flag values)."""

    dq: np.ndarray
    path: Path
    name: str


@dataclass
class SaturationData:
    """A SATURATION reference file: ``threshold`` (float32, DN) and ``dq`` (uint32)."""

    threshold: np.ndarray
    dq: np.ndarray
    path: Path
    name: str


@dataclass
class SuperbiasData:
    """A SUPERBIAS reference file: ``bias`` (float32, DN, NaN allowed) and ``dq`` (uint32)."""

    bias: np.ndarray
    dq: np.ndarray
    path: Path
    name: str


@dataclass
class LinearityData:
    """A LINEARITY reference file: ``coeffs`` (float32, (ncoeffs, ny, nx)) and ``dq`` (uint32).

    ``has_inverse`` tells whether the file also has INV_COEFFS (used by the pipeline for
    group-averaged readouts only).
    """

    coeffs: np.ndarray
    dq: np.ndarray
    path: Path
    name: str
    has_inverse: bool = False


def read_mask(
    path,
    *,
    detector: str | None = None,
    instrument: str | None = None,
    name: str | None = None,
    shape: tuple[int, int] = FULL_FRAME,
) -> MaskData:
    """Read and check a MASK reference file.

    Parameters
    ----------
    path : path-like
    detector, instrument : str, optional
        Expected DETECTOR (CRDS style, e.g. ``NRCA1``) and INSTRUME; a mismatch is an error.
    name : str, optional
        Name to record in output headers (default: the file name).
    shape : (int, int)
        Frame shape the file must have (default: full frame).

    Raises
    ------
    CalibrationError
    """
    f = _open_reference(path, "mask", detector=detector, instrument=instrument, optional=(), shape=shape)
    return MaskData(f.arrays["DQ"], f.path, _header_name(f.path, name))


def read_saturation(path, *, detector=None, instrument=None, name=None, shape=FULL_FRAME) -> SaturationData:
    """Read and check a SATURATION reference file (see `read_mask` for the parameters)."""
    f = _open_reference(path, "saturation", detector=detector, instrument=instrument, shape=shape)
    return SaturationData(f.arrays["SCI"], f.arrays["DQ"], f.path, _header_name(f.path, name))


def read_superbias(path, *, detector=None, instrument=None, name=None, shape=FULL_FRAME) -> SuperbiasData:
    """Read and check a SUPERBIAS reference file (see `read_mask` for the parameters)."""
    f = _open_reference(path, "superbias", detector=detector, instrument=instrument, shape=shape)
    return SuperbiasData(f.arrays["SCI"], f.arrays["DQ"], f.path, _header_name(f.path, name))


def read_linearity(path, *, detector=None, instrument=None, name=None, shape=FULL_FRAME) -> LinearityData:
    """Read and check a LINEARITY reference file (see `read_mask` for the parameters)."""
    f = _open_reference(path, "linearity", detector=detector, instrument=instrument, shape=shape)
    has_inverse = "INV_COEFFS" in f.extensions
    return LinearityData(f.arrays["COEFFS"], f.arrays["DQ"], f.path, _header_name(f.path, name), has_inverse)


@dataclass(frozen=True)
class CalibrationPaths:
    """Paths of the four reference files, and the names to record for them.

    ``names`` maps a reftype to the value written in the linearized dark's header
    (``crds://<file>`` for files chosen by CRDS, else the file name).
    """

    mask: Path
    saturation: Path
    superbias: Path
    linearity: Path
    names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in REFTYPES:
            object.__setattr__(self, t, Path(getattr(self, t)))

    def path(self, reftype: str) -> Path:
        return getattr(self, reftype)

    def name(self, reftype: str) -> str:
        return self.names.get(reftype) or self.path(reftype).name


@dataclass
class Calibration:
    """All four reference files, read and checked."""

    mask: MaskData
    saturation: SaturationData
    superbias: SuperbiasData
    linearity: LinearityData

    def header_cards(self) -> dict[str, str]:
        """``{R_MASK: name, R_SATURA: name, R_SUPERB: name, R_LINEAR: name}``."""
        return {HEADER_KEYWORDS[t]: getattr(self, t).name for t in REFTYPES}


def read_calibration(
    paths: CalibrationPaths, *, detector: str | None = None, instrument: str | None = None
) -> Calibration:
    """Read and check the four reference files of *paths* for a raw dark of *detector*."""
    kw = dict(detector=detector, instrument=instrument)
    return Calibration(
        mask=read_mask(paths.mask, name=paths.name("mask"), **kw),
        saturation=read_saturation(paths.saturation, name=paths.name("saturation"), **kw),
        superbias=read_superbias(paths.superbias, name=paths.name("superbias"), **kw),
        linearity=read_linearity(paths.linearity, name=paths.name("linearity"), **kw),
    )


# ---------------------------------------------------------------------------------------------
# Finding reference files


@dataclass(frozen=True)
class _Candidate:
    path: Path
    reftype: str
    instrument: str
    detector: str
    useafter: str
    subarray: str


class CalibrationDirectory:
    """A folder of reference files, matched to raw darks by REFTYPE, INSTRUME and DETECTOR.

    The folder is scanned once (recursively, ``*.fits``); files without a REFTYPE of interest
    are ignored. When several files of a type fit a detector, the one with the latest USEAFTER
    not later than the dark's DATE-OBS is chosen (as CRDS would), else the latest USEAFTER;
    files whose SUBARRAY is neither FULL nor GENERIC are skipped.

    Parameters
    ----------
    directory : path-like
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise CalibrationError(f"calibration folder {self.directory} does not exist")
        self.candidates: list[_Candidate] = []
        for path in sorted(self.directory.rglob("*.fits")):
            try:
                h = fits.getheader(path, 0)
            except (OSError, ValueError):
                continue
            reftype = _norm(h.get("REFTYPE")).lower()
            if reftype not in REFTYPES:
                continue
            self.candidates.append(
                _Candidate(
                    path,
                    reftype,
                    _norm(h.get("INSTRUME")),
                    _norm(h.get("DETECTOR")),
                    str(h.get("USEAFTER", "")).strip(),
                    _norm(h.get("SUBARRAY")),
                )
            )

    def select(self, reftype: str, *, instrument: str, detector: str, date: str | None = None) -> Path:
        """The file of *reftype* for a dark of *instrument*/*detector* observed on *date*."""
        fits_ = [
            c
            for c in self.candidates
            if c.reftype == reftype
            and c.detector == _norm(detector)
            and (not c.instrument or c.instrument == _norm(instrument))
            and c.subarray in ("", "FULL", "GENERIC")
        ]
        if not fits_:
            raise CalibrationError(
                f"no {reftype.upper()} reference file for {_norm(instrument)} {_norm(detector)} in "
                f"{self.directory} (files are matched by their REFTYPE and DETECTOR keywords)"
            )
        date = (date or "").strip()
        earlier = [c for c in fits_ if date and c.useafter and c.useafter[:10] <= date[:10]]
        pool = earlier or fits_
        return max(pool, key=lambda c: (c.useafter, str(c.path))).path

    def resolve(self, header: Mapping) -> CalibrationPaths:
        """Paths of all four reference files for a raw dark with primary *header*."""
        kw = dict(
            instrument=header.get("INSTRUME", ""), detector=header.get("DETECTOR", ""), date=header.get("DATE-OBS")
        )
        return CalibrationPaths(**{t: self.select(t, **kw) for t in REFTYPES})


#: FITS keywords of a raw dark and the JWST data-model names CRDS selects references by.
_CRDS_KEYS = {
    "TELESCOP": "meta.telescope",
    "INSTRUME": "meta.instrument.name",
    "DETECTOR": "meta.instrument.detector",
    "CHANNEL": "meta.instrument.channel",
    "MODULE": "meta.instrument.module",
    "FILTER": "meta.instrument.filter",
    "PUPIL": "meta.instrument.pupil",
    "EXP_TYPE": "meta.exposure.type",
    "READPATT": "meta.exposure.readpatt",
    "NGROUPS": "meta.exposure.ngroups",
    "NFRAMES": "meta.exposure.nframes",
    "SUBARRAY": "meta.subarray.name",
    "SUBSTRT1": "meta.subarray.xstart",
    "SUBSIZE1": "meta.subarray.xsize",
    "SUBSTRT2": "meta.subarray.ystart",
    "SUBSIZE2": "meta.subarray.ysize",
    "FASTAXIS": "meta.subarray.fastaxis",
    "SLOWAXIS": "meta.subarray.slowaxis",
    "DATE-OBS": "meta.observation.date",
    "TIME-OBS": "meta.observation.time",
}


def crds_parameters(header: Mapping) -> dict[str, str]:
    """CRDS selection parameters (JWST data-model names) from a raw dark's primary header."""
    params = {"meta.telescope": "JWST"}
    for key, dm in _CRDS_KEYS.items():
        if key in header and header[key] is not None:
            params[dm] = str(header[key])
    params.setdefault("meta.observation.time", "00:00:00")
    return params


def crds_references(header: Mapping, reftypes=REFTYPES, *, context: str | None = None) -> dict[str, Path]:
    """Best reference files for a raw dark from CRDS (``crds.getreferences``).

    Needs a CRDS server (``CRDS_SERVER_URL``) or a local CRDS cache holding the rules and
    files (``CRDS_PATH``); files are downloaded into the cache when a server is reachable.

    Returns
    -------
    dict
        reftype -> local path.

    Raises
    ------
    CalibrationError
        When CRDS cannot answer or has no file of a type.
    """
    import crds  # a declared dependency; imported here because it is slow to import

    params = crds_parameters(header)
    try:
        refs = crds.getreferences(params, reftypes=list(reftypes), observatory="jwst", context=context)
    except Exception as exc:  # CRDS raises many kinds; all mean "no answer"
        raise CalibrationError(
            f"CRDS could not give reference files for {params.get('meta.instrument.detector')}: {exc}. "
            "If no CRDS server was reachable, set CRDS_SERVER_URL (and CRDS_PATH for the local cache); "
            "or give the files with --mask/--saturation/--superbias/--linearity or --calibration-dir"
        ) from None
    out = {}
    for t in reftypes:
        value = str(refs.get(t, "N/A"))
        if "N/A" in value.upper() or not value:
            raise CalibrationError(f"CRDS has no {t.upper()} reference file for this dark ({value})")
        out[t] = Path(value)
    return out


def resolve_calibration(
    header: Mapping,
    *,
    mask: str | os.PathLike | None = None,
    saturation: str | os.PathLike | None = None,
    superbias: str | os.PathLike | None = None,
    linearity: str | os.PathLike | None = None,
    calibration_dir: str | os.PathLike | CalibrationDirectory | None = None,
    use_crds: bool = True,
    crds_context: str | None = None,
) -> CalibrationPaths:
    """Reference files for a raw dark: the given paths, else from a folder, else from CRDS.

    Parameters
    ----------
    header : mapping
        Primary header of the raw dark (INSTRUME, DETECTOR, DATE-OBS, ...).
    mask, saturation, superbias, linearity : path-like, optional
        Explicit files (take precedence).
    calibration_dir : path-like or CalibrationDirectory, optional
        Folder searched for the files not given.
    use_crds : bool
        Ask CRDS for files still missing (else missing files are an error).
    crds_context : str, optional
        CRDS context (``.pmap``) to use.

    Returns
    -------
    CalibrationPaths
    """
    given = {"mask": mask, "saturation": saturation, "superbias": superbias, "linearity": linearity}
    paths: dict[str, Path] = {t: Path(p) for t, p in given.items() if p is not None}
    names: dict[str, str] = {}
    missing = [t for t in REFTYPES if t not in paths]
    if missing and calibration_dir is not None:
        directory = (
            calibration_dir
            if isinstance(calibration_dir, CalibrationDirectory)
            else CalibrationDirectory(calibration_dir)
        )
        kw = dict(
            instrument=header.get("INSTRUME", ""), detector=header.get("DETECTOR", ""), date=header.get("DATE-OBS")
        )
        for t in missing:
            paths[t] = directory.select(t, **kw)
        missing = []
    if missing:
        if not use_crds:
            raise CalibrationError(
                f"no {', '.join(t.upper() for t in missing)} reference file given "
                "(give the files, or a --calibration-dir, or allow CRDS)"
            )
        found = crds_references(header, missing, context=crds_context)
        for t, p in found.items():
            paths[t] = p
            names[t] = "crds://" + p.name
    return CalibrationPaths(names=names, **paths)
