"""Finding a gridded PSF library (core or wings) the way Mirage 2.5 does, and checking a file
the way Mirage will read it (``mirage/psf/psf_selection.py``).

`find_library` follows Mirage's three steps: a file-name glob; if exactly one file matches, a
header confirmation; otherwise (or if that fails) a scan of every ``*.fits`` header in the
folder, which must give exactly one match. `check_core` / `check_wings` report, as text, what
Mirage would reject in the file found (missing keywords, bad normalisation, even-sized wings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits

from .rules import (
    NIRCAM_PUPIL_WHEEL_FILTERS,
    NIRCAM_WLP12_FACTOR,
    NIRISS_CLEARP_FACTOR,
    NIRISS_NRM_FACTOR,
    NIRISS_PUPIL_WHEEL_FILTERS,
    PSF_NORM_MAX,
    PSF_NORM_MIN,
    PSF_RENORM_MAX,
)


class PsfProblem(ValueError):
    """Mirage would not find or not accept a PSF library file; the message says why."""


@dataclass(frozen=True)
class PsfRequest:
    """What the seed-image step asks for (``catalog_seed_image.prepare_psf_entries``)."""

    instrument: str
    detector: str  # aperture prefix: NRCA5, NIS, FGS1
    filter: str
    pupil: str
    wfe: str
    realization: int

    @classmethod
    def for_exposure(cls, instrument: str, detector: str, filter_: str, pupil: str, wfe, realization) -> PsfRequest:
        if pupil.lower() in ("grismr", "grismc"):
            pupil = "CLEAR"
        if filter_.lower() in ("gr150r", "gr150c"):
            filter_ = "CLEAR"
        if instrument == "fgs":  # catalog_seed_image forces NA for FGS
            filter_, pupil = "NA", "NA"
        return cls(instrument, detector, filter_, pupil, str(wfe), int(realization))


def core_pattern(req: PsfRequest) -> tuple[str, float]:
    """Mirage's file-name glob of a core library, and its normalisation factor.

    Raises `PsfProblem` for a NIRISS filter/pupil pair Mirage cannot map (a NameError there).
    """
    inst, det, wfe, n = req.instrument, req.detector.lower(), req.wfe.lower(), req.realization
    factor = 1.0
    if inst == "fgs":
        return f"fgs_{det}_fovp*_samp*_npsf*_{wfe}_realization{n}.fits", factor
    if inst == "niriss":
        f, p = req.filter.lower(), req.pupil.lower()
        name_f = name_p = None
        if f == "clear":
            name_f, name_p = p, f
        elif p == "clearp":
            name_f, name_p, factor = f, p, NIRISS_CLEARP_FACTOR
        if p == "nrm":
            name_f, name_p, factor = f, "mask_nrm", NIRISS_NRM_FACTOR
        if name_f is None:
            raise PsfProblem(
                f"NIRISS filter {req.filter}/pupil {req.pupil} has no PSF library naming in Mirage "
                "(accepted: filter CLEAR, pupil CLEARP or pupil NRM)"
            )
        return f"niriss_{det}_{name_f}_{name_p}_fovp*_samp*_npsf*_{wfe}_realization{n}.fits", factor
    if req.filter.lower() == "wlp4" and req.pupil.lower() == "wlp8":
        factor = NIRCAM_WLP12_FACTOR
    pupil = req.pupil if "GDHS" not in req.pupil else "clear"
    return f"nircam_{det}_{req.filter.lower()}_{pupil.lower()}_fovp*_samp*_npsf*_{wfe}_realization{n}.fits", factor


def wings_pattern(req: PsfRequest) -> str:
    """Mirage's glob of a wings file (raw filter and pupil: no NIRISS mapping)."""
    return (
        f"{req.instrument}_{req.detector.lower()}_{req.filter.lower()}_{req.pupil.lower()}"
        f"_fovp*_samp*_{req.wfe.lower()}_realization{req.realization}.fits"
    )


@lru_cache(maxsize=4096)
def _header(path: Path, ext: str) -> fits.Header | None:
    try:
        with fits.open(path) as hdul:
            return hdul[ext].header.copy()
    except (OSError, KeyError, IndexError, ValueError):
        return None


def _fix_weak_lens(pupil: str) -> tuple[str, str]:
    table = {"WLP4": "CLEAR", "WLP12": "WLP8", "WLM4": "WLM8"}
    if pupil not in table:
        raise KeyError(pupil)
    return "WLP4", table[pupil]


def _header_values(header: fits.Header, instrument: str) -> tuple[str, str, str, str] | None:
    """(instrument, detector, filter, pupil) of a library header, mapped as Mirage maps them."""
    try:
        inst = str(header["INSTRUME"]).upper()
        det = str(header["DETECTOR"] if "DETECTOR" in header else header["DET_NAME"]).upper()
        filt = str(header["FILTER"]).upper()
    except KeyError:
        return None
    default_pupil = {"NIRCAM": "CLEAR", "NIRISS": "CLEARP"}.get(instrument.upper(), "")
    pupil = str(header.get("PUPIL", default_pupil)).upper()
    if inst == "NIRISS" and filt in NIRISS_PUPIL_WHEEL_FILTERS:
        if pupil != "CLEARP":
            return None
        filt, pupil = "CLEAR", filt
    if inst == "NIRCAM" and filt in NIRCAM_PUPIL_WHEEL_FILTERS:
        if pupil != "CLEAR":
            return None
        filt, pupil = {"F4": "F444W", "F3": "F322W2", "F1": "F150W2"}.get(filt[:2], filt), filt
    elif inst == "NIRCAM" and pupil in ("WLP4", "WLM4", "WLP12"):
        try:
            filt, pupil = _fix_weak_lens(pupil)
        except KeyError:
            return None
    if instrument == "fgs":
        filt = pupil = "N/A"
    return inst, det, filt, pupil


def _wfe_of(header: fits.Header) -> tuple[str, object]:
    opd = str(header.get("OPD_FILE", ""))
    wfe = "requirements" if "requirements" in opd else "predicted" if "predicted" in opd else ""
    return wfe, header.get("OPDSLICE")


def _matches(path: Path, req: PsfRequest, ext: str, default: bool, wings: bool, scan: bool) -> bool:
    header = _header(path, ext)
    if header is None:
        return False
    values = _header_values(header, req.instrument)
    if values is None or (not scan and "OPD_FILE" not in header):
        return False
    want_f, want_p = (req.filter, req.pupil) if req.instrument != "fgs" else ("N/A", "N/A")
    if scan and want_p.upper() == "NRM":
        want_p = "MASK_NRM"
    if scan and want_p.upper() in ("GDHS0", "GDHS60"):
        want_p = "CLEAR"
    if values != (req.instrument.upper(), req.detector.upper(), want_f.upper(), want_p.upper()):
        return False
    wfe, realization = _wfe_of(header)
    if scan:
        if "OPD_FILE" not in header or "OPDSLICE" not in header:
            return False  # Mirage's scan reads both and skips the file (KeyError)
        if wfe != req.wfe.lower():
            return False
        return wings or not default or realization == req.realization
    return not default or (wfe == req.wfe.lower() and realization == req.realization)


def find_library(folder: Path, req: PsfRequest, *, wings: bool = False, default: bool = True) -> Path:
    """The file Mirage would use as the core library (or wings) in *folder*.

    Parameters
    ----------
    default : bool
        Whether Mirage will treat *folder* as the default library (then WFE type and realization
        are checked from ``OPD_FILE``/``OPDSLICE``).

    Raises
    ------
    PsfProblem
        No file or several files match; the message gives the pattern and what was found.
    """
    pattern = wings_pattern(req) if wings else core_pattern(req)[0]
    ext = "DET_DIST" if wings else "PRIMARY"
    if not folder.is_dir():
        raise PsfProblem(f"PSF folder {folder} does not exist")
    named = sorted(folder.glob(pattern))
    if len(named) == 1 and _matches(named[0], req, ext, default, wings, scan=False):
        return named[0]
    if len(named) == 1:  # Mirage reads these keywords of the named file unconditionally (a KeyError there)
        header = _header(named[0], ext)
        lacking = [k for k in ("INSTRUME", "FILTER", "OPD_FILE") if header is not None and k not in header]
        if header is not None and "DETECTOR" not in header and "DET_NAME" not in header:
            lacking.append("DETECTOR")
        if lacking:
            raise PsfProblem(f"{named[0].name}: {ext.lower()} header lacks {', '.join(lacking)} (Mirage stops on it)")
    # the scan reads each file's primary header, also for wings (psf_selection.get_library_file)
    found = [p for p in sorted(folder.glob("*.fits")) if _matches(p, req, "PRIMARY", default, wings, scan=True)]
    if len(found) == 1:
        return found[0]
    what = "wings" if wings else "library"
    want = f"{req.instrument} {req.detector} {req.filter}/{req.pupil} {req.wfe} realization {req.realization}"
    if not found:
        hint = f"{len(named)} file(s) named {pattern}" + (" but the header does not match" if named else "")
        raise PsfProblem(f"no PSF {what} for {want} in {folder} ({hint}; no header match among *.fits)")
    raise PsfProblem(f"more than one PSF {what} for {want} in {folder}: {', '.join(p.name for p in found)}")


_DET_YX = re.compile(r"^\(\s*[-+0-9.eE]+\s*,\s*[-+0-9.eE]+\s*\)$")


def check_core(path: Path, factor: float = 1.0) -> list[str]:
    """What Mirage (stpsf's ``to_griddedpsfmodel`` + ``check_normalization``) rejects in a core file."""
    try:
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
            data = None if data is None else np.asarray(data, dtype=np.float64)
    except (OSError, ValueError) as exc:
        return [f"{path.name}: not a readable FITS file ({exc})"]
    problems = []
    for key in ("INSTRUME", "FILTER", "OPD_FILE", "OVERSAMP"):
        if key not in header:
            problems.append(f"{path.name}: primary header lacks {key}")
    if "DETECTOR" not in header and "DET_NAME" not in header:
        problems.append(f"{path.name}: primary header lacks DETECTOR")
    if data is None or data.ndim not in (2, 3):
        problems.append(f"{path.name}: primary HDU must hold the PSF cube (n_psf, ny, nx) or one 2-D PSF")
        return problems
    cube = data if data.ndim == 3 else data[None]
    for i in range(cube.shape[0]):
        value = header.get(f"DET_YX{i}")
        if value is None or not _DET_YX.match(str(value).strip()):
            problems.append(f"{path.name}: DET_YX{i} missing or not '(y, x)' (one per PSF in the cube)")
            break
    try:
        oversamp = float(header["OVERSAMP"])
    except (KeyError, TypeError, ValueError):
        return problems
    low, high = PSF_NORM_MIN * factor, PSF_NORM_MAX * factor
    for i, psf in enumerate(cube):
        total = psf.sum() / oversamp**2
        if total < low or total > PSF_RENORM_MAX:  # Mirage rescales sums in (high, 1.1]
            problems.append(
                f"{path.name}: PSF {i} sums to {total:.3g} x OVERSAMP**2; Mirage accepts {low:.3g} to "
                f"{max(high, PSF_RENORM_MAX):.3g} (a PSF normalised to 1 at detector sampling)"
            )
            break
    return problems


def check_wings(path: Path) -> list[str]:
    """What Mirage rejects in a wings file (``DET_DIST`` image, odd sizes after cropping one pixel)."""
    try:
        with fits.open(path) as hdul:
            image = hdul["DET_DIST"].data
    except KeyError:
        return [f"{path.name}: no DET_DIST extension (Mirage reads the wings image from it)"]
    except (OSError, ValueError) as exc:
        return [f"{path.name}: not a readable FITS file ({exc})"]
    if image is None or image.ndim != 2:
        return [f"{path.name}: DET_DIST must hold a 2-D image"]
    cropped = tuple(n - 2 for n in image.shape)
    if any(n % 2 == 0 for n in cropped):
        return [
            f"{path.name}: wings image is {image.shape[0]}x{image.shape[1]}; Mirage crops one pixel all "
            "round and needs odd sizes after that (so an odd-sized image)"
        ]
    return []
