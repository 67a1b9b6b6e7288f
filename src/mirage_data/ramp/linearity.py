"""The ``linearity`` step: the reference file's polynomial, in float32 as stcal evaluates it.

>>> import numpy as np
>>> data = np.array([[100.0, 60000.0]], np.float32)
>>> gdq = np.array([[0, 2]], np.uint8)  # the second pixel is SATURATED: left as it is
>>> coeffs = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[1e-5, 1e-5]]], np.float32)
>>> apply_linearity(data, gdq, coeffs).tolist()
[[100.10000610351562, 60000.0]]
"""

from __future__ import annotations

import numpy as np

from .dqflags import NO_LIN_CORR, SATURATED

__all__ = ["prepare_linearity", "apply_linearity"]


def prepare_linearity(
    coeffs: np.ndarray, dq: np.ndarray, *, copy: bool = True, flags: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Linearity coefficients as ``stcal.linearity`` uses them, and the PIXELDQ flags it adds.

    Pixels flagged NO_LIN_CORR in the reference DQ, with a NaN coefficient, or with a zero
    linear term get the identity polynomial (0, 1, 0, ...); the latter two are flagged
    NO_LIN_CORR.

    Parameters
    ----------
    coeffs : ndarray of float32, (ncoeffs, ny, nx)
        LINEARITY ``COEFFS``: corrected = sum(c[k] * raw**k).
    dq : ndarray of uint32, (ny, nx)
        LINEARITY ``DQ`` (standard flag values).
    copy : bool
        If False, *coeffs* may be modified in place.
    flags : bool
        Compute the PIXELDQ flags (else None is returned for them).

    Returns
    -------
    coeffs : ndarray of float32
    pixeldq : ndarray of uint32 or None
        Flags to OR into PIXELDQ (the reference DQ plus the new NO_LIN_CORR flags).
    """
    coeffs = np.array(coeffs, dtype=np.float32, copy=copy)
    if coeffs.ndim != 3 or coeffs.shape[0] < 2:
        raise ValueError(f"linearity coefficients must be (ncoeffs >= 2, ny, nx), got {coeffs.shape}")
    identity = np.zeros(coeffs.shape[0], np.float32)
    identity[1] = 1.0
    flags = np.array(dq, dtype=np.uint32, copy=True) if flags else None

    def reset(where: np.ndarray) -> None:
        if where.any():
            for k in range(coeffs.shape[0]):
                np.copyto(coeffs[k], identity[k], where=where)

    reset(np.bitwise_and(dq, NO_LIN_CORR) == NO_LIN_CORR)
    nan = np.zeros(coeffs.shape[1:], bool)
    for plane in coeffs:
        nan |= np.isnan(plane)
    reset(nan)
    zero = coeffs[1] == 0
    reset(zero)
    if flags is not None:
        flags[nan | zero] |= NO_LIN_CORR
    return coeffs, flags


def apply_linearity(
    data: np.ndarray,
    gdq: np.ndarray,
    coeffs: np.ndarray,
    out: np.ndarray | None = None,
    work: np.ndarray | None = None,
) -> np.ndarray:
    """Linearize groups (or a tile of them): Horner's rule in float32, as stcal does.

    Groups flagged SATURATED keep their value.

    Parameters
    ----------
    data : ndarray of float32, (..., ny, nx)
        Data after reference-pixel correction (DN).
    gdq : ndarray of uint8, same shape as *data*
        GROUPDQ.
    coeffs : ndarray of float32, (ncoeffs, ny, nx)
        Prepared coefficients (`prepare_linearity`) for the same pixels.
    out : ndarray, optional
        Where to write the result (float32); default: a new float32 array.
    work : ndarray of float32, optional
        Scratch space of *data*'s shape.

    Returns
    -------
    ndarray
    """
    n = coeffs.shape[0]
    result = np.multiply(coeffs[n - 1], data, out=work)
    for j in range(n - 2, 0, -1):
        result += coeffs[j]
        result *= data
    if out is None:
        out = result
    np.add(result, coeffs[0], out=out)
    saturated = (gdq & SATURATED) != 0
    if saturated.any():
        np.copyto(out, data, where=saturated)
    return out
