"""Frames beyond the end of a dark ramp, continuing its accumulation (no jump, no doubled bias).

A dark of ``n`` frames ``D(0) ... D(n-1)`` is continued by repeating its frame-to-frame
differences: frame ``k >= n`` is written ``k = q (n - 1) + r`` with ``0 <= r < n - 1`` and
is ``E(k) = D(r) + q (D(n-1) - D(0))``. So ``E(n-1) = D(n-1)``; each later step ``E(k) -
E(k-1)`` is one of the dark's own steps ``D(j) - D(j-1)`` (the step after the seam is
``D(1) - D(0)``); the bias (in ``D(0)``) is counted once, never added again; and the signal
keeps accumulating at the dark's own rate. Frame 0 is used only as the base that is taken
away. The same continuation applied to SBANDREFPIX keeps the bias there single too.

When a ramp needs fewer than ``2n`` frames this is Mirage 2.5's padding, frame for frame
(``D(j) - D(0) + D(n-1)``). From ``2n`` frames on Mirage first appends a whole copy of the
dark plus its last frame, frame 0 included, which adds the bias again and makes a jump at
frame ``n``. Plain numpy: no files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_source", "extend_frame"]


def frame_source(k: int, nframes: int) -> tuple[int, int]:
    """(r, q) such that frame *k* of the continued ramp is ``D(r) + q (D(n-1) - D(0))``.

    >>> [frame_source(k, 4) for k in (2, 3, 4, 6, 7)]
    [(2, 0), (3, 0), (1, 1), (0, 2), (1, 2)]
    """
    k, n = int(k), int(nframes)
    if k < 0:
        raise ValueError(f"frame {k} < 0")
    if k < n:
        return k, 0
    if n < 2:
        raise ValueError(f"a ramp of {n} frame cannot be continued (its step is unknown)")
    q, r = divmod(k, n - 1)
    return r, q


def _f32(a) -> np.ndarray:
    """*a* as float32 values without a copy when it already is float32 (either byte order)."""
    a = np.asarray(a)
    return a if (a.dtype.kind == "f" and a.dtype.itemsize == 4) else a.astype(np.float32)


def extend_frame(
    frame: np.ndarray, first: np.ndarray, last: np.ndarray, q: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``D(r) + q (D(n-1) - D(0))`` in float32, as ``(D(r) - D(0)) + D(n-1) [+ (q-1)(D(n-1) - D(0))]``.

    Parameters
    ----------
    frame, first, last : ndarray
        ``D(r)``, ``D(0)`` and ``D(n-1)`` (one shape; float32 of either byte order is used as it is).
    q : int
        Repetitions of the dark's whole rise (``q = 0`` returns *frame*).
    out : ndarray of float32, optional
        Receives the frame (no other full-frame temporary is made).
    """
    if out is None:
        out = np.empty(np.shape(frame), np.float32)
    if q == 0:
        np.copyto(out, frame, casting="unsafe")
        return out
    first, last = _f32(first), _f32(last)
    # Mirage's order of operations for q == 1, so that results agree to the bit there
    np.subtract(_f32(frame), first, out=out)
    np.add(out, last, out=out)
    for _ in range(q - 1):  # each further rise added in place: no temporary frame
        np.add(out, last, out=out)
        np.subtract(out, first, out=out)
    return out
