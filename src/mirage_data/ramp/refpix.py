"""The ``refpix`` step for near-infrared detectors (the "median" side-pixel algorithm).

Reference pixels are corrected per group, group 0 included (the pipeline does not subtract
the first read of NIR data; the superbias removes the bias). The precision of the correction
carries from group to group: the refpix step computes the very first group of an exposure in
float32 and every later one in float64, an effect of its reused work buffer (`float64`).
Which borders and amplifiers a frame has comes from its `FrameGeometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import FrameGeometry, to_detector

__all__ = [
    "to_detector",
    "RefpixCorrection",
    "ReferenceStrips",
    "compute_refpix_correction",
    "correct_reference_pixels",
]


def _sigma_clipped_mean(values: np.ndarray, bad: np.ndarray, limit: float):
    """Clipped mean of the reference pixels not flagged DO_NOT_USE (None if there are none).

    As ``jwst.refpix.reference_pixels.Dataset.sigma_clip`` with ``scipy.stats.sigmaclip``:
    iterative clipping at *limit* standard deviations, computed in the data's precision.
    """
    good = values[~bad]
    if good.size == 0:
        return None
    if np.std(good, dtype=np.float64) != 0.0:
        c = good
        while True:
            c_std = np.std(c)
            c_mean = np.mean(c)
            size = c.size
            c = c[(c >= c_mean - c_std * limit) & (c <= c_mean + c_std * limit)]
            if size == c.size:
                break
        return c.mean()
    return good.mean(dtype=np.float64)


def _average_with_none(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return 0.5 * (a + b)


def _side_median(data: np.ndarray, bad: np.ndarray, length: int) -> np.ndarray:
    """Running median down the side reference columns, reflected at the ends (as float64).

    As ``NIRDataset.median_filter``: for each row, the median of the good pixels in a window
    of *length* rows (NaN where the window has none).
    """
    nrows, ncols = data.shape
    if ncols == 0:  # no reference columns on this side (a subarray)
        return np.full(nrows, np.nan)
    odd = length + 1 if length % 2 == 0 else length
    buf = odd // 2

    def reflect(a):
        out = np.empty((nrows + odd - 1, ncols), a.dtype)
        out[buf : buf + nrows] = a
        if buf:
            out[:buf] = a[buf:0:-1]
            out[-buf:] = a[-2 : -(buf + 2) : -1]
        return out

    values = reflect(data)
    values[reflect(bad)] = np.nan
    windows = np.lib.stride_tricks.sliding_window_view(values, (length, ncols))[:nrows, 0]
    windows = np.sort(windows.reshape(nrows, length * ncols), axis=1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(windows), axis=1)
    rows = np.arange(nrows)
    lo = windows[rows, np.maximum(count - 1, 0) // 2]
    hi = windows[rows, np.minimum(count // 2, length * ncols - 1)]
    # np.median: mean of the two middle values, in the data's precision
    median = ((lo + hi) / values.dtype.type(2)).astype(np.float64)
    median[count == 0] = np.nan
    return median


def _combine_with_nans(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = 0.5 * (a + b)
    out = np.where(np.isnan(a), b, out)
    out = np.where(np.isnan(b), a, out)
    out[np.isnan(a) & np.isnan(b)] = 0.0
    return out


@dataclass
class RefpixCorrection:
    """The reference-pixel signal of one group, ready to subtract from tiles of it.

    Attributes
    ----------
    column_values : ndarray (detector columns,)
        Top/bottom signal per DMS column (per DMS row when the detector's fast axis is the DMS
        y axis), DN, in the working precision (float32 or float64).
    side : ndarray (detector rows,) of float64 or None
        ``side_gain`` times the side reference signal per DMS row (per DMS column when
        transposed), DN.
    transposed : bool
        True when detector rows are DMS columns (``abs(FASTAXIS) == 2``).
    float64_columns : (ndarray of bool, ndarray of float64) or None
        In float32 precision, the columns (rows when transposed) whose top/bottom value is a
        float64 number (reference pixels without spread, the pipeline's float64 mean), and
        those values: the pipeline subtracts them in float64 and rounds to float32 at once
        (their `column_values` are 0).
    """

    column_values: np.ndarray
    side: np.ndarray | None
    transposed: bool
    float64_columns: tuple | None = None

    def apply(self, tile: np.ndarray, rows: slice = slice(None), work: np.ndarray | None = None) -> np.ndarray:
        """Subtract the signal from *tile* (DMS rows *rows* of a float32 group), in place.

        Values are subtracted in the working precision, the side signal in float64, and the
        result rounded to float32 once, as the pipeline does. *work* is optional float64
        scratch space of the tile's shape.
        """
        col = self.column_values[rows, None] if self.transposed else self.column_values[None, :]
        if self.float64_columns is not None:
            tile -= col
            which, values = self.float64_columns
            if self.transposed:
                m = which[rows]
                tile[m] = tile[m] - values[rows][m][:, None]
            else:
                tile[:, which] = tile[:, which] - values[which][None, :]
            col = np.zeros(1, np.float32)
        if self.side is None and col.dtype == np.float32:
            tile -= col
            return tile
        if col.dtype == np.float32:
            tile -= col
            col = None
        side = None
        if self.side is not None:
            side = self.side[None, :] if self.transposed else self.side[rows, None]
        if work is None:
            work = np.empty(tile.shape, np.float64)
        if col is not None:
            np.subtract(tile, col, out=work)
            if side is not None:
                np.subtract(work, side, out=work)
        else:
            np.subtract(tile, side, out=work)
        np.copyto(tile, work, casting="same_kind")  # the one rounding to float32
        return tile


@dataclass
class ReferenceStrips:
    """The reference pixels of one group in detector orientation (float32, DN).

    Attributes
    ----------
    top, bottom : ndarray (rows, detector columns)
        The last and the first detector rows (4 each on a full frame; 0 rows where the frame
        has no such border).
    left, right : ndarray (detector rows, columns)
        The first and the last detector columns (likewise).
    """

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def from_group(cls, group: np.ndarray, geometry: FrameGeometry) -> ReferenceStrips:
        """Extract the strips of a DMS-oriented image of *geometry* (copies)."""
        det = geometry.to_detector(group)
        bottom, top, left, right = geometry.borders
        rows, cols = det.shape
        return cls(det[rows - top :].copy(), det[:bottom].copy(), det[:, :left].copy(), det[:, cols - right :].copy())

    def __sub__(self, other: ReferenceStrips) -> ReferenceStrips:
        return ReferenceStrips(
            self.top - other.top, self.bottom - other.bottom, self.left - other.left, self.right - other.right
        )


def compute_refpix_correction(
    group: np.ndarray | ReferenceStrips,
    bad: np.ndarray | ReferenceStrips,
    geometry: FrameGeometry,
    *,
    float64: bool = True,
    odd_even_columns: bool = True,
    use_side_ref_pixels: bool = True,
    side_smoothing_length: int = 11,
    side_gain: float = 1.0,
    sigma_limit: float = 3.0,
) -> RefpixCorrection:
    """Reference-pixel signal of one group (the refpix step's full-frame algorithm and defaults).

    Per amplifier (512 detector columns on a full frame) the sigma-clipped means of the top and
    bottom reference rows (4 each), separately for odd and even columns, averaged top with
    bottom; then, on the group with those subtracted, the running median
    (``side_smoothing_length`` rows) of the left and right reference columns, averaged left
    with right, times ``side_gain``, per row. Pixels flagged DO_NOT_USE in *bad* are ignored;
    so are borders the geometry does not have.

    Parameters
    ----------
    group : ndarray of float32 (ny, nx), or ReferenceStrips
        One group after superbias subtraction (DN), DMS orientation (only the reference
        pixels are read), or its reference strips.
    bad : ndarray of bool (ny, nx), or ReferenceStrips of bool
        DO_NOT_USE in PIXELDQ (after dq_init, saturation and superbias).
    geometry : FrameGeometry
        Orientation, reference borders and amplifiers of the frame.
    float64 : bool
        Working precision. The refpix step keeps one work buffer for all groups; it is
        float32 for the first group of an exposure and float64 (the side correction's
        result type) for every later one, so the statistics and subtractions of group 0 of
        integration 0 are float32 and all others float64. Pass False for that first group.
    odd_even_columns, use_side_ref_pixels, side_smoothing_length, side_gain, sigma_limit
        The step's parameters (``sigma_limit`` is its ``siglimit``); defaults as the step's.

    Returns
    -------
    RefpixCorrection
    """
    if not isinstance(group, ReferenceStrips):
        group = ReferenceStrips.from_group(group, geometry)
    if not isinstance(bad, ReferenceStrips):
        bad = ReferenceStrips.from_group(bad, geometry)
    work = np.float64 if float64 else np.float32
    nx = group.top.shape[1]
    values = []  # (detector columns, value) in the pipeline's order
    edges = ((group.top, bad.top), (group.bottom, bad.bottom))
    for amp in range(geometry.n_amps):
        c0, c1 = geometry.amplifier_columns(amp)
        parts = [slice(c0, c1, 2), slice(c0 + 1, c1, 2)] if odd_even_columns else [slice(c0, c1)]
        signals = []
        for cols in parts:
            top, bottom = (_sigma_clipped_mean(d[:, cols].astype(work), b[:, cols], sigma_limit) for d, b in edges)
            signals.append(_average_with_none(top, bottom))
        if all(v is not None for v in signals):
            values += list(zip(parts, signals, strict=True))

    # a float64 value in float32 precision: the pipeline rounds right after subtracting it
    det_columns = np.zeros(nx, work)
    det64 = np.zeros(nx, np.float64)
    which64 = np.zeros(nx, bool)
    for cols, v in values:
        if float64 or isinstance(v, np.float32):
            det_columns[cols] = v
        else:
            det64[cols], which64[cols] = v, True
    exact = which64.any()
    # detector column c is DMS column (or row) c, or n-1-c when the fast axis is reversed
    flip = int(np.sign(geometry.fastaxis))
    column_values = det_columns[::flip].copy()
    float64_columns = (which64[::flip].copy(), det64[::flip].copy()) if exact else None

    side = None
    if use_side_ref_pixels:
        sides = []
        for strip, strip_bad, first in ((group.left, bad.left, 0), (group.right, bad.right, nx - group.right.shape[1])):
            cols = slice(first, first + strip.shape[1])
            part = strip.astype(work)  # side columns after the top/bottom correction
            part -= det_columns[cols][None, :]
            if exact:
                m = which64[cols]
                part[:, m] = part[:, m] - det64[cols][m][None, :]
            sides.append(_side_median(part, strip_bad, side_smoothing_length))
        combined = _combine_with_nans(sides[0], sides[1])
        # detector row r is DMS row (or column) r, or n-1-r when the slow axis is reversed
        side = (side_gain * combined)[:: int(np.sign(geometry.slowaxis))].copy()
    return RefpixCorrection(column_values, side, geometry.transposed, float64_columns)


def correct_reference_pixels(
    group: np.ndarray,
    bad: np.ndarray,
    geometry: FrameGeometry,
    *,
    correction: RefpixCorrection | None = None,
    **parameters,
) -> np.ndarray:
    """The refpix step on one group, in place (DN).

    Parameters
    ----------
    group : ndarray of float32, (ny, nx)
        One group after superbias subtraction, DMS orientation; corrected in place.
    bad : ndarray of bool, (ny, nx)
        DO_NOT_USE pixels of PIXELDQ (after dq_init, saturation and superbias).
    geometry : FrameGeometry
        Orientation, reference borders and amplifiers of the frame.
    correction : RefpixCorrection, optional
        Precomputed by `compute_refpix_correction` for this group.
    **parameters
        Keyword arguments of `compute_refpix_correction` (``float64``, ``odd_even_columns``,
        ``use_side_ref_pixels``, ``side_smoothing_length``, ``side_gain``, ``sigma_limit``).

    Returns
    -------
    ndarray
        *group*.
    """
    if correction is None:
        correction = compute_refpix_correction(group, bad, geometry, **parameters)
    return correction.apply(group)
