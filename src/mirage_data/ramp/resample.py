"""Frames into groups: which frames of a one-frame-per-group ramp make each group, and their mean.

A readout pattern reads ``nframe`` frames per group and then skips ``nskip`` frames; group
``g`` is the mean of frames ``g * (nframe + nskip) ... g * (nframe + nskip) + nframe - 1``
(averaged frames first, skipped frames after, no leading skip: JWST's and Mirage's convention).
Plain numpy: no files.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["frames_needed", "group_frames", "average_frames"]


def frames_needed(ngroups: int, nframe: int, nskip: int) -> int:
    """Frames an integration of *ngroups* groups spans, trailing skips included (Mirage's count)."""
    return int(ngroups) * (int(nframe) + int(nskip))


def group_frames(ngroups: int, nframe: int, nskip: int) -> np.ndarray:
    """Frame indices averaged into each group.

    Returns
    -------
    ndarray of int, (ngroups, nframe)

    >>> group_frames(2, 8, 12).tolist()[1]
    [20, 21, 22, 23, 24, 25, 26, 27]
    """
    if ngroups < 1 or nframe < 1 or nskip < 0:
        raise ValueError(f"ngroups={ngroups}, nframe={nframe}, nskip={nskip}: need ngroups, nframe >= 1, nskip >= 0")
    start = np.arange(ngroups) * (nframe + nskip)
    return start[:, None] + np.arange(nframe)[None, :]


def average_frames(frames: Iterable[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """The mean of frames, accumulated in float32 one frame after the other.

    This is the arithmetic of ``np.mean(stack, axis=0)`` on a float32 stack (sequential float32
    sums along the first axis, then one division), without holding the stack.

    Parameters
    ----------
    frames : iterable of ndarray
        Frames of one shape (any real dtype; converted to float32).
    out : ndarray of float32, optional
        Receives the mean.
    """
    n = 0
    for frame in frames:
        if n == 0:
            if out is None:
                out = np.array(frame, dtype=np.float32, copy=True)
            else:
                np.copyto(out, frame, casting="unsafe")
        elif frame.dtype.kind == "f" and frame.dtype.itemsize == 4:
            np.add(out, frame, out=out)  # float32 of either byte order: float32 sums
        else:
            np.add(out, np.asarray(frame, dtype=np.float32), out=out)
        n += 1
    if n == 0:
        raise ValueError("no frames to average")
    if n > 1:
        np.true_divide(out, np.float32(n), out=out)
    return out
