"""Data-quality flag values of the JWST pipeline (``stdatamodels.jwst.datamodels.dqflags``).

PIXELDQ is uint32 and GROUPDQ uint8; GROUPDQ uses the subset `GROUP_DQ`.
"""

from __future__ import annotations

__all__ = ["DQ", "GROUP_DQ", "DO_NOT_USE", "SATURATED", "AD_FLOOR", "NO_SAT_CHECK", "NO_LIN_CORR", "REFERENCE_PIXEL"]

#: Pixel data-quality flags of the JWST pipeline, by name.
DQ = {
    "GOOD": 0,
    "DO_NOT_USE": 2**0,
    "SATURATED": 2**1,
    "JUMP_DET": 2**2,
    "DROPOUT": 2**3,
    "OUTLIER": 2**4,
    "PERSISTENCE": 2**5,
    "AD_FLOOR": 2**6,
    "CHARGELOSS": 2**7,
    "RESERVED": 2**8,
    "NON_SCIENCE": 2**9,
    "DEAD": 2**10,
    "HOT": 2**11,
    "WARM": 2**12,
    "LOW_QE": 2**13,
    "RC": 2**14,
    "TELEGRAPH": 2**15,
    "NONLINEAR": 2**16,
    "BAD_REF_PIXEL": 2**17,
    "NO_FLAT_FIELD": 2**18,
    "NO_GAIN_VALUE": 2**19,
    "NO_LIN_CORR": 2**20,
    "NO_SAT_CHECK": 2**21,
    "UNRELIABLE_BIAS": 2**22,
    "UNRELIABLE_DARK": 2**23,
    "UNRELIABLE_SLOPE": 2**24,
    "UNRELIABLE_FLAT": 2**25,
    "OPEN": 2**26,
    "ADJ_OPEN": 2**27,
    "FLUX_ESTIMATED": 2**28,
    "MSA_FAILED_OPEN": 2**29,
    "OTHER_BAD_PIXEL": 2**30,
    "REFERENCE_PIXEL": 2**31,
}

#: Group data-quality flags (the subset of `DQ` that GROUPDQ uses).
GROUP_DQ = {
    k: DQ[k]
    for k in ("GOOD", "DO_NOT_USE", "SATURATED", "JUMP_DET", "DROPOUT", "PERSISTENCE", "AD_FLOOR", "CHARGELOSS")
}

DO_NOT_USE = DQ["DO_NOT_USE"]
SATURATED = DQ["SATURATED"]
AD_FLOOR = DQ["AD_FLOOR"]
NO_SAT_CHECK = DQ["NO_SAT_CHECK"]
NO_LIN_CORR = DQ["NO_LIN_CORR"]
REFERENCE_PIXEL = DQ["REFERENCE_PIXEL"]
