"""DQ_DEF tables of JWST reference files: translating a file's DQ bits to the pipeline's flags.

A reference file's DQ array uses the bit values its DQ_DEF table names; `stdatamodels`
translates them to the standard values on opening, and so does `apply_dq_definitions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from mirage_data.ramp.dqflags import DQ

__all__ = ["apply_dq_definitions"]


def apply_dq_definitions(
    dq: np.ndarray, dq_def: Iterable | None, *, in_place: bool = False, flags: Mapping[str, int] = DQ
) -> np.ndarray:
    """Translate a reference file's DQ array to the pipeline's flag values using its DQ_DEF.

    As `stdatamodels` does when it opens a reference file: each DQ_DEF row maps a bit ``VALUE``
    of the file to the standard flag named ``NAME``; bits without a row with a known name are
    dropped. Without a DQ_DEF table (None or empty) the array is returned unchanged.

    Parameters
    ----------
    dq : ndarray of uint32
        DQ array as stored in the file.
    dq_def : sequence of records with ``VALUE`` and ``NAME`` fields, or None
        The file's DQ_DEF table.
    in_place : bool
        Overwrite *dq* (saves a copy of the array).
    flags : mapping of str to int
        The standard flag values by name (default: the pipeline's).

    Returns
    -------
    ndarray of uint32
    """
    if dq_def is None or len(dq_def) == 0:
        return dq
    pairs = []
    for record in dq_def:
        name = record["NAME"]
        name = (name.decode() if isinstance(name, bytes) else str(name)).strip()
        if name in flags:  # stdatamodels warns about unknown mnemonics and ignores them
            pairs.append((int(record["VALUE"]), flags[name]))
    out = dq if in_place else np.empty_like(dq)
    if all(value == flag for value, flag in pairs):
        np.bitwise_and(dq, sum({v for v, _ in pairs}), out=out)  # already standard values
        return out
    rows = max(1, (1 << 20) // max(dq.shape[-1], 1))
    flat_in = dq.reshape(-1, dq.shape[-1]) if dq.ndim else dq.reshape(1, 1)
    flat_out = out.reshape(-1, dq.shape[-1]) if dq.ndim else out.reshape(1, 1)
    for r0 in range(0, flat_in.shape[0], rows):
        chunk = flat_in[r0 : r0 + rows]
        mapped = np.zeros_like(chunk)
        for value, flag in pairs:
            np.bitwise_or(mapped, flag, out=mapped, where=np.bitwise_and(chunk, value) != 0)
        flat_out[r0 : r0 + rows] = mapped
    return out
