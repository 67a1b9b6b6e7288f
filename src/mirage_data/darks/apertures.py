"""Where an aperture lies in its detector's full frame, from the SIAF (``pysiaf``), as Mirage 2.5 finds it.

`aperture_bounds` gives ``(x0, y0, x1, y1)``: 0-based, inclusive, science-frame (DMS)
pixel bounds of the aperture in its full-frame parent, the rectangle Mirage's dark_prep crops
to. The rules are Mirage's (``siaf_interface.sci_subarray_corners``): the aperture's detector
corners (re-derived) taken to the science frame of its master (full-frame) aperture or first
parent; NIRCam takes corners 0 and 2 (1 and 3 if the science frame does not flip the detector
frame); NIRISS and FGS corners 0 and 2 (other corners for the OSS apertures; fixed rows for
``NIS_SUBSTRIP96/256``); then ``ceil(lower) - 1`` and ``floor(upper) - 1``.
"""

from __future__ import annotations

import math
from functools import lru_cache

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


@lru_cache(maxsize=256)
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
    inst = SIAF_INSTRUMENTS.get(str(instrument).lower())
    if inst is None:
        raise ValueError(f"unknown instrument {instrument!r}; accepted: {', '.join(SIAF_INSTRUMENTS)}")
    siaf, masters, parents = _siaf(inst)
    if aperture not in siaf.apernames:
        raise ValueError(f"{aperture!r} is not a {inst} SIAF aperture (e.g. {sorted(siaf.apernames)[0]})")
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
