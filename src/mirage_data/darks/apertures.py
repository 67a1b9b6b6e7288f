"""Where an aperture lies in its detector's full frame, from the SIAF (``pysiaf``), as Mirage 2.5 finds it.

`aperture_bounds` gives ``(x0, y0, x1, y1)``: 0-based, inclusive, science-frame (DMS)
pixel bounds of the aperture in its full-frame parent, the rectangle Mirage's dark_prep crops
to. The rules are Mirage's (``siaf_interface.sci_subarray_corners``): the aperture's detector
corners (re-derived) taken to the science frame of its master (full-frame) aperture or first
parent; NIRCam takes corners 0 and 2 (1 and 3 if the science frame does not flip the detector
frame); NIRISS and FGS corners 0 and 2 (other corners for the OSS apertures; fixed rows for
``NIS_SUBSTRIP96/256``); then ``ceil(lower) - 1`` and ``floor(upper) - 1``.

The bounds of all apertures of an instrument are computed once per pysiaf installation and
kept in the user's cache folder (see `_all_bounds`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["aperture_bounds", "SIAF_INSTRUMENTS"]

SIAF_INSTRUMENTS = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}


def _import_pysiaf():
    """Import pysiaf without its online check of the PRD version (a GitHub request on import).

    That check only logs a warning, but it is a network call from an offline preparation
    step (and it has no time-out): ``requests.get`` refuses while pysiaf is first imported.
    """
    import sys

    if "pysiaf" in sys.modules:
        return sys.modules["pysiaf"]
    import logging

    import requests

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("mirage-data: no network use while importing pysiaf")

    saved = requests.get
    requests.get = refuse
    quiet = logging.getLogger("pysiaf")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "cannot be checked against online version" warning
    try:
        import pysiaf
    finally:
        requests.get = saved
        quiet.setLevel(level)
    return pysiaf


@lru_cache(maxsize=4)
def _siaf(instrument: str):
    pysiaf = _import_pysiaf()  # imported when needed: it takes a second
    from pysiaf import iando

    siaf = pysiaf.Siaf(instrument)
    masters = set(iando.read.read_siaf_detector_layout()["AperName"].data)
    definitions = iando.read.read_siaf_aperture_definitions(instrument)
    parents = dict(zip(definitions["AperName"].tolist(), definitions["parent_apertures"].tolist(), strict=True))
    return siaf, masters, parents


def _cache_path(instrument: str) -> Path | None:
    """Where the bounds of all of *instrument*'s apertures are kept for this pysiaf installation."""
    try:
        version = metadata.version("pysiaf")
        spec = importlib.util.find_spec("pysiaf")
    except (metadata.PackageNotFoundError, ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    where = Path(spec.origin).parent
    stamp = hashlib.sha1(f"{where}:{where.stat().st_mtime_ns}:{version}".encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mirage-data" / f"siaf_bounds_{instrument.lower()}_{version}_{stamp}.json"


@lru_cache(maxsize=4)
def _all_bounds(instrument: str) -> dict:
    """{aperture: [x0, y0, x1, y1] or error text} for every SIAF aperture of *instrument*.

    Computed with pysiaf once per pysiaf installation and kept in the user's cache folder
    (``$XDG_CACHE_HOME/mirage-data``): importing pysiaf and reading its SIAF takes seconds,
    which would dominate preparing a small dark. The file is named by pysiaf's version and
    installation, so another pysiaf computes its own.
    """
    path = _cache_path(instrument)
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            pass
    siaf, _, _ = _siaf(SIAF_INSTRUMENTS[instrument])
    table = {}
    for name in siaf.apernames:
        try:
            table[name] = list(_compute_bounds(instrument, name))
        except Exception as exc:  # noqa: BLE001 (kept as text: the aperture has no bounds)
            table[name] = f"{type(exc).__name__}: {exc}"
    if path is not None:
        try:
            from mirage_data.io.atomic import atomic_write_text

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(table))
        except OSError:
            pass  # no writable cache: computed again next time
    return table


def aperture_bounds(instrument: str, aperture: str) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of *aperture* in its full frame (0-based, inclusive, science frame).

    Parameters
    ----------
    instrument : str
        ``nircam``, ``niriss`` or ``fgs`` (case-insensitive).
    aperture : str
        SIAF aperture name (``Readout:array_name`` of a Mirage yaml), e.g. ``NRCB1_SUB160``.

    Raises
    ------
    ValueError
        Unknown instrument or aperture.
    """
    inst = str(instrument).lower()
    if inst not in SIAF_INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}; accepted: {', '.join(SIAF_INSTRUMENTS)}")
    table = _all_bounds(inst)
    found = table.get(aperture)
    if found is None:
        raise ValueError(f"{aperture!r} is not a {SIAF_INSTRUMENTS[inst]} SIAF aperture (e.g. {sorted(table)[0]})")
    if isinstance(found, str):
        raise ValueError(f"{aperture}: no full-frame bounds in the SIAF ({found})")
    x0, y0, x1, y1 = found
    return int(x0), int(y0), int(x1), int(y1)


def _compute_bounds(instrument: str, aperture: str) -> tuple[int, int, int, int]:
    """`aperture_bounds` computed from the SIAF (Mirage's rules, see the module docstring)."""
    inst = SIAF_INSTRUMENTS[instrument]
    siaf, masters, parents = _siaf(inst)
    ap = siaf[aperture]
    x_det, y_det = ap.corners("det", rederive=True)
    parent = parents.get(aperture)
    if isinstance(parent, str) and ";" in parent:
        parent = parent.split(";")[0]
    if aperture in masters:
        x_sci, y_sci = ap.det_to_sci(x_det, y_det)
        frame = ap
    elif isinstance(parent, str) and parent and parent != "None":
        frame = siaf[parent]
        x_sci, y_sci = frame.det_to_sci(x_det, y_det)
    else:
        raise ValueError(f"{aperture}: the SIAF names no full-frame parent aperture")
    if inst == "NIRCam":
        xi = yi = (1, 3) if frame.DetSciParity == 1 else (0, 2)
    else:
        xi = yi = (0, 2)
        if aperture in ("NIS_CEN_OSS", "FGS1_FULL_OSS"):
            xi, yi = (1, 3), (3, 1)
        elif aperture == "FGS2_FULL_OSS":
            xi, yi = (1, 3), (1, 3)
    xc = [x_sci[xi[0]], x_sci[xi[1]]]
    yc = [y_sci[yi[0]], y_sci[yi[1]]]
    if aperture == "NIS_SUBSTRIP96":
        xc, yc = [1, 2048], [1803, 1898]
    elif aperture == "NIS_SUBSTRIP256":
        xc, yc = [1, 2048], [1793, 2048]
    x0, x1 = math.ceil(xc[0]) - 1, math.floor(xc[1]) - 1
    y0, y1 = math.ceil(yc[0]) - 1, math.floor(yc[1]) - 1
    return int(x0), int(y0), int(x1), int(y1)
