"""The ``superbias`` step: subtract the bias level (NaN in the reference counts as 0)."""

from __future__ import annotations

import numpy as np

__all__ = ["prepare_superbias", "subtract_superbias"]


def prepare_superbias(bias: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Superbias as the superbias step subtracts it: float32, NaN replaced by 0 (DN)."""
    bias = np.array(bias, dtype=np.float32, copy=copy)
    bias[np.isnan(bias)] = 0.0
    return bias


def subtract_superbias(data: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Subtract the (prepared) superbias from every group of *data* in place (DN)."""
    data -= bias
    return data
