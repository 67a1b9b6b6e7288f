"""The ``dq_init`` step: the MASK reference file's flags into PIXELDQ and GROUPDQ."""

from __future__ import annotations

import numpy as np

from .dqflags import DO_NOT_USE

__all__ = ["initialize_dq"]


def initialize_dq(
    mask_dq: np.ndarray,
    pixeldq: np.ndarray | None = None,
    groupdq: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``dq_init`` step: OR the mask into PIXELDQ and its DO_NOT_USE bit into GROUPDQ.

    Parameters
    ----------
    mask_dq : ndarray of uint32, (ny, nx)
        MASK reference DQ (standard flag values).
    pixeldq : ndarray of uint32, (ny, nx), optional
        Existing PIXELDQ (zeros if None).
    groupdq : ndarray of uint8, (..., ny, nx), optional
        GROUPDQ of one or more groups, updated in place.

    Returns
    -------
    pixeldq : ndarray of uint32
    groupdq : ndarray of uint8 or None
    """
    if pixeldq is None:
        pixeldq = np.zeros(mask_dq.shape, np.uint32)
    pixeldq = pixeldq | mask_dq
    if groupdq is not None:
        groupdq |= (mask_dq & DO_NOT_USE).astype(np.uint8)
    return pixeldq, groupdq
