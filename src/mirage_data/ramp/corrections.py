"""Ramp corrections of the JWST calibration pipeline, as plain numpy functions.

The functions reproduce, number for number, what the JWST pipeline's ``dq_init``,
``saturation``, ``superbias``, ``refpix`` (full-frame near-infrared, default "median"
algorithm) and ``linearity`` steps do to a full-frame NIRCam, NIRISS or FGS ramp (jwst 3.0 with
stcal 1.20), without data models or file I/O. All signal values are in DN; data are float32 as
in the pipeline's ``RampModel``; PIXELDQ is uint32 and GROUPDQ uint8 with the pipeline's flag
values (`DQ`).

Every step works one group at a time, so a ramp can be streamed through them. What carries
from group to group: saturation flagging (a pixel stays saturated once saturated, and for
group-averaged readouts a group's DO_NOT_USE flag depends on the next group:
`SaturationState`), and the precision of the reference-pixel correction (the refpix step
computes the very first group of an exposure in float32 and every later one in float64, an
effect of its reused work buffer). Reference pixels are corrected per group, group 0 included
(the pipeline does not subtract the first read of NIR data; the superbias removes the bias).
`RampLinearizer` chains the steps for one group at a time in the pipeline's order, processing a
frame in row tiles so that the arrays stay in cache; `linearize_ramp` runs it on a ramp in
memory.

Examples
--------
>>> import numpy as np
>>> from mirage_data.ramp.corrections import apply_linearity
>>> data = np.array([[100.0, 60000.0]], np.float32)
>>> gdq = np.array([[0, 2]], np.uint8)  # the second pixel is SATURATED: left as it is
>>> coeffs = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[1e-5, 1e-5]]], np.float32)
>>> apply_linearity(data, gdq, coeffs).tolist()
[[100.10000610351562, 60000.0]]
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DQ",
    "GROUP_DQ",
    "ATOD_LIMIT",
    "FULL_FRAME",
    "apply_dq_definitions",
    "initialize_dq",
    "read_pattern",
    "prepare_saturation",
    "grow_flags",
    "SaturationReference",
    "SaturationState",
    "flag_saturation_group",
    "finish_saturation",
    "flag_saturation",
    "prepare_superbias",
    "subtract_superbias",
    "to_detector",
    "RefpixCorrection",
    "compute_refpix_correction",
    "correct_reference_pixels",
    "prepare_linearity",
    "apply_linearity",
    "ReferenceStrips",
    "PreparedCalibration",
    "CalibrationBuilder",
    "prepare_calibration",
    "RampLinearizer",
    "RampResult",
    "linearize_ramp",
]

#: Pixel data-quality flags of the JWST pipeline (``stdatamodels.jwst.datamodels.dqflags``).
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

#: Hard limit of the 16-bit A-to-D converter (DN), as in ``jwst.saturation``.
ATOD_LIMIT = 65535.0

#: Shape of a full-frame NIR detector readout, reference pixels included.
FULL_FRAME = (2048, 2048)

_REF = 4  # width of the reference-pixel border
_AMP_WIDTH = 512  # detector columns per amplifier


# ---------------------------------------------------------------------------------------------
# dq_init


def apply_dq_definitions(dq: np.ndarray, dq_def: Iterable | None, *, in_place: bool = False) -> np.ndarray:
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
        if name in DQ:  # stdatamodels warns about unknown mnemonics and ignores them
            pairs.append((int(record["VALUE"]), DQ[name]))
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


def initialize_dq(
    mask_dq: np.ndarray,
    pixeldq: np.ndarray | None = None,
    groupdq: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``dq_init`` step: OR the mask into PIXELDQ and its DO_NOT_USE bit into GROUPDQ.

    Parameters
    ----------
    mask_dq : ndarray of uint32, (ny, nx)
        MASK reference DQ (after `apply_dq_definitions`).
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


# ---------------------------------------------------------------------------------------------
# saturation


def read_pattern(ngroups: int, nframes: int) -> list[list[int]]:
    """The frame numbers (1-based) in each group, as the saturation step builds them.

    The step ignores NSKIP here (``x + 1 + group * nframes``), and so does this function.

    >>> read_pattern(3, 2)
    [[1, 2], [3, 4], [5, 6]]
    """
    return [[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]


@dataclass
class SaturationReference:
    """Saturation thresholds prepared as the saturation step uses them.

    Attributes
    ----------
    threshold : ndarray of float32 (ny, nx)
        Saturation level (DN); NaN and NO_SAT_CHECK pixels set above the A-to-D limit.
    pixeldq : ndarray of uint32 (ny, nx)
        Flags the step ORs into PIXELDQ (the file's DQ, plus NO_SAT_CHECK where the level is NaN).
    no_sat_check : ndarray of bool (ny, nx)
        Pixels that are never flagged.
    bias : ndarray of float32 (ny, nx) or None
        Superbias (DN) for the group-2 check, NaN where unknown (then that check never flags).
    """

    threshold: np.ndarray
    pixeldq: np.ndarray
    no_sat_check: np.ndarray
    bias: np.ndarray | None = None
    bias_nan: np.ndarray | None = None


def prepare_saturation(
    threshold: np.ndarray,
    dq: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    copy: bool = True,
) -> SaturationReference:
    """Prepare saturation thresholds like ``stcal.saturation.flag_saturated_pixels``.

    Parameters
    ----------
    threshold : ndarray of float32, (ny, nx)
        SATURATION reference ``SCI`` (DN).
    dq : ndarray of uint32, (ny, nx)
        SATURATION reference ``DQ`` (after `apply_dq_definitions`).
    bias : ndarray of float32, (ny, nx), optional
        SUPERBIAS ``SCI`` (DN) as read (NaN kept), used by the group-2 check.
    copy : bool
        If False, *threshold* and *dq* may be modified in place.

    Returns
    -------
    SaturationReference
    """
    threshold = np.array(threshold, dtype=np.float32, copy=copy)
    dq = np.array(dq, dtype=np.uint32, copy=copy)
    nan = np.isnan(threshold)
    no_sat_check = (np.bitwise_and(dq, NO_SAT_CHECK) == NO_SAT_CHECK) | nan
    dq[nan] |= NO_SAT_CHECK
    threshold[no_sat_check] = ATOD_LIMIT + 1
    bias_nan = None
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float32)
        bias_nan = np.isnan(bias)
        if not bias_nan.any():
            bias_nan = None
    return SaturationReference(threshold, dq, no_sat_check, bias, bias_nan)


def grow_flags(mask: np.ndarray, n_pix: int = 1) -> np.ndarray:
    """Grow a boolean image by *n_pix* pixels in every direction (square box dilation).

    Same result as ``scipy.ndimage.binary_dilation`` with a (2n+1)x(2n+1) box, which is what
    ``stcal`` does to saturated pixels (charge spilling into neighbours).
    """
    if n_pix <= 0:
        return mask.copy()
    out = mask.copy()
    for s in range(1, n_pix + 1):
        out[s:, :] |= mask[:-s, :]
        out[:-s, :] |= mask[s:, :]
    rows = out.copy()
    for s in range(1, n_pix + 1):
        out[:, s:] |= rows[:, :-s]
        out[:, :-s] |= rows[:, s:]
    return out


def _grow_points(target: np.ndarray, flat_index: np.ndarray, n_pix: int) -> None:
    """Set the (2n+1)-box around each pixel (flat indices) in the boolean image *target*."""
    ny, nx = target.shape
    y, x = np.divmod(flat_index, nx)
    for dy in range(-n_pix, n_pix + 1):
        yy = y + dy
        ok_y = (yy >= 0) & (yy < ny)
        for dx in range(-n_pix, n_pix + 1):
            xx = x + dx
            ok = ok_y & (xx >= 0) & (xx < nx)
            target[yy[ok], xx[ok]] = True


@dataclass
class SaturationState:
    """What saturation flagging carries from one group of an integration to the next.

    Create one per integration with `SaturationState.start`. Flagging a group is three
    operations, which may each run on row ranges (tiles) of the group: `compare` (which
    pixels reached their threshold), `grow` (once per group, after all compares), `flag`
    (set the group's flags); then `advance` completes the flags that needed this group and
    moves on. `flag_saturation_group` does all four on a whole group.

    Attributes
    ----------
    reference : SaturationReference
    pattern : list of list of int or None
        `read_pattern` of the exposure (None: the step's ``use_readpatt=False``).
    ngroups : int
        Groups in the integration.
    n_pix_grow_sat : int
        Layers of neighbours also flagged SATURATED.
    group : int
        Index of the group being flagged.
    saturated : ndarray of bool
        Pixels at or above their threshold in this or an earlier group (the running tally).
    grown : ndarray of bool
        `saturated` grown by ``n_pix_grow_sat``: the SATURATED flags of the group.
    """

    reference: SaturationReference
    pattern: list | None
    ngroups: int
    n_pix_grow_sat: int = 1
    group: int = 0
    saturated: np.ndarray | None = None
    grown: np.ndarray | None = None
    candidates: np.ndarray | None = None  # backward-pass candidates of the group being flagged
    pending: tuple | None = None  # (group, gdq plane, candidates) of the previous group
    kept: list = field(default_factory=list)  # raw groups 0 and 1 for the group-2 check

    @classmethod
    def start(
        cls, reference: SaturationReference, ngroups: int, pattern: list | None, n_pix_grow_sat: int = 1
    ) -> SaturationState:
        """State at the start of an integration."""
        shape = reference.threshold.shape
        return cls(
            reference, pattern, ngroups, n_pix_grow_sat, saturated=np.zeros(shape, bool), grown=np.zeros(shape, bool)
        )

    @property
    def dilution(self) -> float:
        """Group-averaging dilution of this group's signal (1: no backward check)."""
        g = self.group
        if self.pattern is None or g >= self.ngroups - 1:
            return 1.0
        return float(np.mean(self.pattern[g]) / self.pattern[g][-1])

    def compare(self, plane: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Update the tally with group data *plane* (rows *rows* of the frame).

        Returns the flat indices (in the frame) of pixels that saturated in this group.
        """
        now = plane >= self.reference.threshold[rows]
        tally = self.saturated[rows]
        new = now & ~tally
        tally |= now
        if not new.any():
            return np.empty(0, np.intp)
        start = (rows.start or 0) * self.saturated.shape[1]
        return np.flatnonzero(new) + start

    def grow(self, new: np.ndarray) -> None:
        """Add the pixels that saturated in this group (and their neighbours) to `grown`."""
        if new.size == 0:
            return
        if self.n_pix_grow_sat > 0:
            _grow_points(self.grown, new, self.n_pix_grow_sat)
        else:
            self.grown.reshape(-1)[new] = True

    def begin_flags(self) -> None:
        """Call once per group before `flag` (allocates what the backward check needs)."""
        if self.dilution != 1:
            self.candidates = np.zeros(self.saturated.shape, bool)

    def flag(self, gdq: np.ndarray, plane: np.ndarray, rows: slice = slice(None)) -> None:
        """Set SATURATED and AD_FLOOR|DO_NOT_USE in *gdq* (rows *rows* of this group)."""
        grown = self.grown[rows]
        extra = (gdq & SATURATED) != 0  # SATURATED already in the input GROUPDQ
        if extra.any():
            # stcal grows every SATURATED flag of the plane, those too (for this group only)
            grown = grown | grow_flags(extra, self.n_pix_grow_sat)
        np.bitwise_or(gdq, SATURATED, out=gdq, where=grown)
        np.bitwise_or(gdq, AD_FLOOR | DO_NOT_USE, out=gdq, where=plane <= 0)
        dilution = self.dilution
        if dilution != 1:
            ref = self.reference
            limit = ref.threshold[rows] * np.where(ref.no_sat_check[rows], 1, dilution)
            self.candidates[rows] = (plane >= limit) & ((gdq & (SATURATED | DO_NOT_USE)) == 0)

    def advance(self, gdq: np.ndarray, plane: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Finish the group (whole *gdq* plane flagged, raw *plane*); go to the next one.

        Returns the ``(group index, gdq plane)`` pairs whose flags are now final: the
        previous group's, completed with the DO_NOT_USE flags of the backward pass (a group
        that would have saturated undiluted by group averaging, when this one saturated) and
        of the group-2 check (saturated in the third group after a jump in the second).
        """
        g = self.group
        sat = (gdq & SATURATED) != 0
        finished = []
        if self.pending is not None:
            pg, pgdq, candidates = self.pending
            if candidates is not None:
                flags = candidates & sat
                if flags.any():
                    if self.n_pix_grow_sat > 0:
                        flags = grow_flags(flags, self.n_pix_grow_sat)
                    np.bitwise_or(pgdq, DO_NOT_USE, out=pgdq, where=flags)
            if g == 2 and self.kept:
                self._group2_check(pgdq, sat)
            finished.append((pg, pgdq))
        self.pending = (g, gdq, self.candidates)
        self.candidates = None
        if self.pattern is not None and self.ngroups > 2 and g < 2 and len(self.pattern[0]) > 1:
            # one-frame groups: the group-2 check compares group 1 both below and above its
            # threshold, which cannot be, so only group-averaged ramps need the planes
            self.kept.append(plane.copy())
        self.group += 1
        return finished

    def _group2_check(self, gdq1: np.ndarray, sat2: np.ndarray) -> None:
        # stcal's check, evaluated only where group 2 is newly SATURATED (elsewhere it is False)
        idx = np.flatnonzero(sat2 & ((gdq1 & SATURATED) == 0))
        if idx.size:
            ref, pattern = self.reference, self.pattern
            d0 = self.kept[0].reshape(-1)[idx].astype(np.float32)
            d1 = self.kept[1].reshape(-1)[idx].astype(np.float32)
            thr = ref.threshold.reshape(-1)[idx]
            bias = np.float32(0.0) if ref.bias is None else ref.bias.reshape(-1)[idx]
            mask = ((d0 - bias) / np.mean(pattern[0])) * pattern[2][-1] + bias < thr
            mask &= (d1 - d0) > (thr - d0) / len(pattern[1])
            if ref.bias_nan is not None:
                mask &= ~ref.bias_nan.reshape(-1)[idx]  # NaN superbias: stcal's tests are False
            gdq1.reshape(-1)[idx[mask]] |= DO_NOT_USE
        self.kept = []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Release the last group's plane at the end of the integration (now final)."""
        out = [] if self.pending is None else [(self.pending[0], self.pending[1])]
        self.pending = None
        self.kept = []
        return out


def flag_saturation_group(plane: np.ndarray, gdq: np.ndarray, state: SaturationState) -> list[tuple[int, np.ndarray]]:
    """Flag one group of an integration for saturation and the A/D floor.

    SATURATED where the pixel is at or above its threshold in this or an earlier group
    (grown by ``n_pix_grow_sat``), AD_FLOOR|DO_NOT_USE where the value is 0 or less, as
    ``stcal.saturation.flag_saturated_pixels``. The DO_NOT_USE flags the step adds afterwards
    need the next group, so *state* keeps *gdq* until then (see `SaturationState.advance`).

    Parameters
    ----------
    plane : ndarray, (ny, nx)
        Raw group data (DN), float32 or uint16.
    gdq : ndarray of uint8, (ny, nx)
        GROUPDQ of this group after dq_init; flagged in place, kept by *state* until final.
    state : SaturationState
        State of the integration; updated.

    Returns
    -------
    list of (int, ndarray)
        ``(group index, gdq plane)`` pairs whose flags are now final.
    """
    state.grow(state.compare(plane))
    state.begin_flags()
    state.flag(gdq, plane)
    return state.advance(gdq, plane)


def finish_saturation(state: SaturationState) -> list[tuple[int, np.ndarray]]:
    """At the end of an integration: the planes still held by *state* (now final)."""
    return state.finish()


def flag_saturation(
    data: np.ndarray,
    groupdq: np.ndarray,
    ref: SaturationReference,
    *,
    nframes: int = 1,
    n_pix_grow_sat: int = 1,
    use_readpatt: bool = True,
) -> np.ndarray:
    """The saturation step on a whole ramp in memory.

    Parameters
    ----------
    data : ndarray of float32, (nints, ngroups, ny, nx)
        Raw ramp (DN).
    groupdq : ndarray of uint8, same shape
        GROUPDQ after dq_init; updated in place.
    ref : SaturationReference
    nframes : int
        Frames averaged per group (NFRAMES).
    n_pix_grow_sat : int
        The step's ``n_pix_grow_sat`` (default 1).
    use_readpatt : bool
        The step's ``use_readpatt`` (default True).

    Returns
    -------
    ndarray of uint8
        *groupdq*.
    """
    nints, ngroups = data.shape[:2]
    pattern = read_pattern(ngroups, nframes) if use_readpatt else None
    for i in range(nints):
        state = SaturationState.start(ref, ngroups, pattern, n_pix_grow_sat)
        for g in range(ngroups):
            flag_saturation_group(data[i, g], groupdq[i, g], state)
        state.finish()
    return groupdq


# ---------------------------------------------------------------------------------------------
# superbias


def prepare_superbias(bias: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Superbias as the superbias step subtracts it: float32, NaN replaced by 0 (DN)."""
    bias = np.array(bias, dtype=np.float32, copy=copy)
    bias[np.isnan(bias)] = 0.0
    return bias


def subtract_superbias(data: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Subtract the (prepared) superbias from every group of *data* in place (DN)."""
    data -= bias
    return data


# ---------------------------------------------------------------------------------------------
# refpix (full-frame NIR, "median" side-pixel algorithm)


def to_detector(image: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    """View of a DMS-oriented image in detector orientation (``FASTAXIS``/``SLOWAXIS``).

    As ``jwst.lib.reffile_utils.science_detector_frame_transform``; a view, so writing into
    it writes into *image*. Detector orientation puts the amplifiers along the columns and
    reads each row left to right.
    """
    if abs(fastaxis) == 1:
        return image[..., :: int(np.sign(slowaxis)), :: int(np.sign(fastaxis))]
    return np.swapaxes(image[..., :: int(np.sign(fastaxis)), :: int(np.sign(slowaxis))], -2, -1)


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
    column_values : ndarray (2048,)
        Top/bottom signal per DMS column (per DMS row when the detector's fast axis is the DMS
        y axis), DN, in the working precision (float32 or float64).
    side : ndarray (2048,) of float64 or None
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
    top, bottom : ndarray (4, 2048)
        The 4 last and the 4 first detector rows.
    left, right : ndarray (2048, 4)
        The 4 first and the 4 last detector columns.
    """

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def from_group(cls, group: np.ndarray, fastaxis: int, slowaxis: int) -> ReferenceStrips:
        """Extract the strips of a DMS-oriented full-frame image (copies)."""
        det = to_detector(group, fastaxis, slowaxis)
        return cls(det[-_REF:].copy(), det[:_REF].copy(), det[:, :_REF].copy(), det[:, -_REF:].copy())

    def __sub__(self, other: ReferenceStrips) -> ReferenceStrips:
        return ReferenceStrips(
            self.top - other.top, self.bottom - other.bottom, self.left - other.left, self.right - other.right
        )


def compute_refpix_correction(
    group: np.ndarray | ReferenceStrips,
    bad: np.ndarray | ReferenceStrips,
    fastaxis: int,
    slowaxis: int,
    *,
    float64: bool = True,
    odd_even_columns: bool = True,
    use_side_ref_pixels: bool = True,
    side_smoothing_length: int = 11,
    side_gain: float = 1.0,
    sigma_limit: float = 3.0,
) -> RefpixCorrection:
    """Reference-pixel signal of one full-frame group (the refpix step's defaults).

    Per amplifier (512 detector columns) the sigma-clipped means of the top and bottom
    reference rows (4 each), separately for odd and even columns, averaged top with bottom;
    then, on the group with those subtracted, the running median (``side_smoothing_length``
    rows) of the 4 left and 4 right reference columns, averaged left with right, times
    ``side_gain``, per row. Pixels flagged DO_NOT_USE in *bad* are ignored.

    Parameters
    ----------
    group : ndarray of float32 (2048, 2048), or ReferenceStrips
        One group after superbias subtraction (DN), DMS orientation (only the reference
        pixels are read), or its reference strips.
    bad : ndarray of bool (2048, 2048), or ReferenceStrips of bool
        DO_NOT_USE in PIXELDQ (after dq_init, saturation and superbias).
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS`` of the exposure.
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
        group = ReferenceStrips.from_group(group, fastaxis, slowaxis)
    if not isinstance(bad, ReferenceStrips):
        bad = ReferenceStrips.from_group(bad, fastaxis, slowaxis)
    work = np.float64 if float64 else np.float32
    nx = group.top.shape[1]
    values = []  # (detector columns, value) in the pipeline's order
    edges = ((group.top, bad.top), (group.bottom, bad.bottom))
    for amp in range(4):
        c0, c1 = amp * _AMP_WIDTH, (amp + 1) * _AMP_WIDTH
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
    flip = int(np.sign(fastaxis))
    column_values = det_columns[::flip].copy()
    float64_columns = (which64[::flip].copy(), det64[::flip].copy()) if exact else None

    side = None
    if use_side_ref_pixels:
        sides = []
        for strip, strip_bad, first in ((group.left, bad.left, 0), (group.right, bad.right, nx - _REF)):
            part = strip.astype(work)  # side columns after the top/bottom correction
            part -= det_columns[first : first + _REF][None, :]
            if exact:
                m = which64[first : first + _REF]
                part[:, m] = part[:, m] - det64[first : first + _REF][m][None, :]
            sides.append(_side_median(part, strip_bad, side_smoothing_length))
        combined = _combine_with_nans(sides[0], sides[1])
        # detector row r is DMS row (or column) r, or n-1-r when the slow axis is reversed
        side = (side_gain * combined)[:: int(np.sign(slowaxis))].copy()
    return RefpixCorrection(column_values, side, abs(fastaxis) == 2, float64_columns)


def correct_reference_pixels(
    group: np.ndarray,
    bad: np.ndarray,
    fastaxis: int,
    slowaxis: int,
    *,
    correction: RefpixCorrection | None = None,
    **parameters,
) -> np.ndarray:
    """The refpix step on one full-frame group, in place (DN).

    Parameters
    ----------
    group : ndarray of float32, (2048, 2048)
        One group after superbias subtraction, DMS orientation; corrected in place.
    bad : ndarray of bool, (2048, 2048)
        DO_NOT_USE pixels of PIXELDQ (after dq_init, saturation and superbias).
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS`` of the exposure.
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
        correction = compute_refpix_correction(group, bad, fastaxis, slowaxis, **parameters)
    return correction.apply(group)


# ---------------------------------------------------------------------------------------------
# linearity


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
        LINEARITY ``DQ`` (after `apply_dq_definitions`).
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
        Where to write the result (any float dtype, e.g. big-endian for FITS); default: a new
        float32 array.
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


# ---------------------------------------------------------------------------------------------
# the chain


@dataclass
class PreparedCalibration:
    """Reference data prepared for `RampLinearizer` (see `CalibrationBuilder`).

    Attributes
    ----------
    saturation : SaturationReference
        Thresholds; its ``bias`` is the superbias as subtracted (NaN replaced by 0).
    coeffs : ndarray of float32 (ncoeffs, ny, nx)
        Prepared linearity coefficients.
    group_base : ndarray of uint8 (ny, nx)
        GROUPDQ every group starts from (the mask's DO_NOT_USE).
    refpix_bad : ndarray of bool (ny, nx)
        DO_NOT_USE in PIXELDQ as the refpix step sees it (before linearity).
    pixeldq : ndarray of uint32 (ny, nx) or None
        Final PIXELDQ (None when not kept).
    """

    saturation: SaturationReference
    coeffs: np.ndarray
    group_base: np.ndarray
    refpix_bad: np.ndarray
    pixeldq: np.ndarray | None

    @property
    def bias(self) -> np.ndarray:
        return self.saturation.bias


class CalibrationBuilder:
    """Prepare the reference data one file at a time, keeping only what the chain needs.

    Feed the four reference files' arrays (any order) with the ``add_*`` methods, then call
    `build`. With ``copy=False`` (the default here) the arrays given may be modified and kept;
    drop your own references to them to let the unneeded ones go.

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    pixeldq : ndarray of uint32, optional
        PIXELDQ of the input ramp.
    keep_pixeldq : bool
        Keep the final PIXELDQ (16 MB for a full frame); not needed for the data.
    group_averaged : bool
        The ramp averages several frames per group (NFRAMES > 1). If not, what only the
        saturation step's group-averaging checks use is not kept (those checks cannot flag
        one-frame groups: the group-2 check needs group 1 below and above the threshold).
    """

    def __init__(
        self,
        shape=FULL_FRAME,
        pixeldq: np.ndarray | None = None,
        keep_pixeldq: bool = True,
        group_averaged: bool = True,
    ) -> None:
        self.shape = tuple(shape)
        self.group_averaged = group_averaged
        self.pixeldq = np.zeros(self.shape, np.uint32) if keep_pixeldq else None
        self.bad = np.zeros(self.shape, bool)
        if pixeldq is not None:
            self._or_dq(pixeldq)
        self.group_base = None
        self.saturation = None
        self.bias = None
        self.bias_nan = None
        self.coeffs = None

    def _check(self, name: str, a: np.ndarray) -> None:
        if a.shape[-2:] != self.shape:
            raise ValueError(f"{name} has shape {a.shape}; frames are {self.shape}")

    def _or_dq(self, dq: np.ndarray, refpix: bool = True) -> None:
        if self.pixeldq is not None:
            self.pixeldq |= dq
        if refpix:
            self.bad |= (dq & DO_NOT_USE) != 0

    def add_mask(self, dq: np.ndarray) -> None:
        """MASK DQ (standard flag values): dq_init."""
        self._check("mask", dq)
        self._or_dq(dq)
        self.group_base = (dq & DO_NOT_USE).astype(np.uint8)

    def add_saturation(self, threshold: np.ndarray, dq: np.ndarray, copy: bool = False) -> None:
        """SATURATION SCI (DN) and DQ."""
        self._check("saturation", threshold)
        self.saturation = prepare_saturation(threshold, dq, copy=copy)
        self._or_dq(self.saturation.pixeldq)
        self.saturation.pixeldq = None
        if not self.group_averaged:
            self.saturation.no_sat_check = None

    def add_superbias(self, bias: np.ndarray, dq: np.ndarray, copy: bool = False) -> None:
        """SUPERBIAS SCI (DN, NaN allowed) and DQ."""
        self._check("superbias", bias)
        nan = np.isnan(bias)
        self.bias_nan = nan if nan.any() and self.group_averaged else None
        self.bias = prepare_superbias(bias, copy=copy)
        self._or_dq(np.asarray(dq, np.uint32))

    def add_linearity(self, coeffs: np.ndarray, dq: np.ndarray, copy: bool = False) -> None:
        """LINEARITY COEFFS and DQ."""
        self._check("linearity", coeffs)
        self.coeffs, flags = prepare_linearity(coeffs, dq, copy=copy, flags=self.pixeldq is not None)
        if flags is not None:
            self.pixeldq |= flags  # not for refpix: the linearity step runs after it

    def build(self) -> PreparedCalibration:
        missing = [
            n
            for n, v in (
                ("mask", self.group_base),
                ("saturation", self.saturation),
                ("superbias", self.bias),
                ("linearity", self.coeffs),
            )
            if v is None
        ]
        if missing:
            raise ValueError(f"missing reference data: {', '.join(missing)}")
        sat = self.saturation
        sat.bias, sat.bias_nan = self.bias, self.bias_nan  # the group-2 check reads the superbias
        return PreparedCalibration(sat, self.coeffs, self.group_base, self.bad, self.pixeldq)


def prepare_calibration(
    *,
    mask_dq: np.ndarray,
    saturation: np.ndarray,
    saturation_dq: np.ndarray,
    superbias: np.ndarray,
    superbias_dq: np.ndarray,
    coeffs: np.ndarray,
    linearity_dq: np.ndarray,
    pixeldq: np.ndarray | None = None,
    keep_pixeldq: bool = True,
    copy: bool = True,
) -> PreparedCalibration:
    """Prepare the four reference files' arrays (standard DQ values) for `RampLinearizer`."""
    b = CalibrationBuilder(mask_dq.shape, pixeldq, keep_pixeldq)
    b.add_mask(np.asarray(mask_dq, np.uint32))
    b.add_saturation(saturation, saturation_dq, copy=copy)
    b.add_superbias(superbias, superbias_dq, copy=copy)
    b.add_linearity(coeffs, linearity_dq, copy=copy)
    return b.build()


class RampLinearizer:
    """The pipeline's dq_init, saturation, superbias, refpix and linearity, one group at a time.

    Call `start_integration`, then `process_group` for each group in order, then
    `finish_integration`. Each group is processed in row tiles (cache-sized), in two passes:
    saturation tally; then flags, superbias, reference pixels, SBANDREFPIX and linearity, the
    results of each tile going straight to the outputs. The reference-pixel statistics come
    from the frame's borders before the second pass.

    Parameters
    ----------
    calibration : PreparedCalibration
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS`` of the exposure.
    ngroups : int
        Groups per integration.
    nframes : int
        Frames averaged per group (NFRAMES).
    n_pix_grow_sat, use_readpatt : int, bool
        Saturation step parameters (defaults 1, True).
    refpix : dict, optional
        Reference-pixel parameters (`compute_refpix_correction`).
    tile_rows : int
        Rows per tile.
    threads : int
        Threads sharing the tiles of a group (numpy releases the GIL in its loops).
    """

    def __init__(
        self,
        calibration: PreparedCalibration,
        *,
        fastaxis: int,
        slowaxis: int,
        ngroups: int,
        nframes: int = 1,
        n_pix_grow_sat: int = 1,
        use_readpatt: bool = True,
        refpix: dict | None = None,
        tile_rows: int = 128,
        threads: int = 1,
    ) -> None:
        self.calibration = calibration
        self.shape = calibration.group_base.shape
        self.fastaxis, self.slowaxis = int(fastaxis), int(slowaxis)
        self.ngroups, self.nframes = int(ngroups), int(nframes)
        self.n_pix_grow_sat = n_pix_grow_sat
        self.use_readpatt = use_readpatt
        self.pattern = read_pattern(self.ngroups, self.nframes) if use_readpatt else None
        self.refpix = dict(refpix or {})
        self.tile_rows = max(1, int(tile_rows))
        self.threads = max(1, int(threads))
        self._pool = None
        self._local = threading.local()  # per-thread tile buffers
        self._bias_strips = ReferenceStrips.from_group(calibration.bias, self.fastaxis, self.slowaxis)
        self._bad_strips = ReferenceStrips.from_group(calibration.refpix_bad, self.fastaxis, self.slowaxis)
        self._gdq = [np.empty(self.shape, np.uint8), np.empty(self.shape, np.uint8)]
        self._next = 0
        self.state: SaturationState | None = None
        self._groups_done = 0  # the refpix step works in float32 on the very first group only

    @classmethod
    def from_reference_arrays(cls, *, pixeldq=None, copy=True, **kwargs) -> RampLinearizer:
        """Build from the reference files' arrays (arguments of `prepare_calibration`)."""
        arrays = {
            k: kwargs.pop(k)
            for k in ("mask_dq", "saturation", "saturation_dq", "superbias", "superbias_dq", "coeffs", "linearity_dq")
        }
        return cls(prepare_calibration(pixeldq=pixeldq, copy=copy, **arrays), **kwargs)

    @property
    def pixeldq(self) -> np.ndarray | None:
        """Final PIXELDQ (uint32), if kept."""
        return self.calibration.pixeldq

    def for_ngroups(self, ngroups: int) -> RampLinearizer:
        """A linearizer sharing this one's calibration for ramps of *ngroups* groups.

        Fresh state, as a new pipeline run (Mirage linearizes zero frames as one-group ramps
        of their own).
        """
        return RampLinearizer(
            self.calibration,
            fastaxis=self.fastaxis,
            slowaxis=self.slowaxis,
            ngroups=ngroups,
            nframes=self.nframes,
            n_pix_grow_sat=self.n_pix_grow_sat,
            use_readpatt=self.use_readpatt,
            refpix=self.refpix,
            tile_rows=self.tile_rows,
            threads=self.threads,
        )

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def start_integration(self) -> None:
        """Reset the carried saturation state."""
        self.state = SaturationState.start(self.calibration.saturation, self.ngroups, self.pattern, self.n_pix_grow_sat)

    def finish_integration(self) -> list[tuple[int, np.ndarray]]:
        """GROUPDQ planes still held by the saturation state, now final."""
        out = self.state.finish()
        self.state = None
        return out

    def _run(self, job) -> list:
        """Run job(rows) over the tiles of the frame, on `threads` threads."""
        ny = self.shape[0]
        tiles = [slice(r, min(r + self.tile_rows, ny)) for r in range(0, ny, self.tile_rows)]
        if self.threads == 1:
            return [job(t) for t in tiles]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ramp")
        n = self.threads
        chunks = [tiles[k::n] for k in range(n)]  # interleaved: even work, neighbouring writes
        futures = [self._pool.submit(lambda ts: [job(t) for t in ts], c) for c in chunks]
        return [r for f in futures for r in f.result()]

    def process_group(
        self,
        raw: np.ndarray,
        sci_out,
        sbandrefpix_out,
        groupdq_in: np.ndarray | None = None,
    ) -> list[tuple[int, np.ndarray]]:
        """Run one group through the chain.

        Parameters
        ----------
        raw : ndarray, (ny, nx)
            Raw group (DN), uint16 or float32.
        sci_out, sbandrefpix_out : ndarray (ny, nx), or callable(rows, tile)
            Receive the linearized group and raw minus the group after superbias and
            reference-pixel correction (DN): arrays (any float dtype) are filled; a callable
            is given each row range (slice) and its tile, possibly from several threads at
            once, in the callable's ``dtype`` attribute if it has one (else float32); the tile
            is reused after the call returns.
        groupdq_in : ndarray of uint8, optional
            GROUPDQ of the input file for this group.

        Returns
        -------
        list of (int, ndarray of uint8)
            GROUPDQ planes that are now final (of this or the previous group); valid until the
            next call.
        """
        if self.state is None:
            raise RuntimeError("call start_integration() first")
        if raw.shape != self.shape:
            raise ValueError(f"group has shape {raw.shape}, expected {self.shape}")
        state = self.state
        cal = self.calibration
        gdq = self._gdq[self._next]
        self._next ^= 1
        np.copyto(gdq, cal.group_base)
        if groupdq_in is not None:
            gdq |= groupdq_in.astype(np.uint8)

        new = self._run(lambda rows: state.compare(raw[rows], rows))
        state.grow(np.concatenate(new))
        state.begin_flags()

        strips = ReferenceStrips.from_group(raw, self.fastaxis, self.slowaxis)
        strips = ReferenceStrips(*(a.astype(np.float32) for a in vars(strips).values())) - self._bias_strips
        correction = compute_refpix_correction(
            strips, self._bad_strips, self.fastaxis, self.slowaxis, float64=self._groups_done > 0, **self.refpix
        )
        self._groups_done += 1
        bias, coeffs = cal.bias, cal.coeffs

        nx = self.shape[1]

        # tiles for a callable output are made in its dtype (e.g. big-endian for FITS)
        sci_dtype = np.dtype(getattr(sci_out, "dtype", np.float32)) if callable(sci_out) else None
        sb_dtype = np.dtype(getattr(sbandrefpix_out, "dtype", np.float32)) if callable(sbandrefpix_out) else None

        def second_pass(rows):
            local = self._local
            if not hasattr(local, "work"):
                n = self.tile_rows
                local.work = np.empty((n, nx), np.float64)
                local.cur = np.empty((n, nx), np.float32)
                local.poly = np.empty((n, nx), np.float32)
                local.out = {}
            m = rows.stop - rows.start
            r32 = raw[rows].astype(np.float32)
            gdq_t = gdq[rows]
            state.flag(gdq_t, r32, rows)
            cur = np.subtract(r32, bias[rows], out=local.cur[:m])
            correction.apply(cur, rows, local.work[:m])
            if sb_dtype is None:
                sb_t = sbandrefpix_out[rows]
            else:
                sb_t = local.out.get(("sb", sb_dtype))
                if sb_t is None:
                    sb_t = local.out[("sb", sb_dtype)] = np.empty((self.tile_rows, nx), sb_dtype)
                sb_t = sb_t[:m]
            np.subtract(r32, cur, out=sb_t)
            if sci_dtype is None:
                sci_t = sci_out[rows]
            else:
                sci_t = local.out.get(("sci", sci_dtype))
                if sci_t is None:
                    sci_t = local.out[("sci", sci_dtype)] = np.empty((self.tile_rows, nx), sci_dtype)
                sci_t = sci_t[:m]
            apply_linearity(cur, gdq_t, coeffs[:, rows], out=sci_t, work=local.poly[:m])
            if sb_dtype is not None:
                sbandrefpix_out(rows, sb_t)
            if sci_dtype is not None:
                sci_out(rows, sci_t)

        self._run(second_pass)
        return state.advance(gdq, raw)


@dataclass
class RampResult:
    """Result of `linearize_ramp` (all in DMS orientation).

    Attributes
    ----------
    sci : ndarray of float32, (nints, ngroups, ny, nx)
        Linearized ramp (DN).
    sbandrefpix : ndarray of float32, same shape
        Raw minus the ramp after superbias and reference-pixel correction (DN).
    pixeldq : ndarray of uint32, (ny, nx)
    groupdq : ndarray of uint8, (nints, ngroups, ny, nx)
    """

    sci: np.ndarray
    sbandrefpix: np.ndarray
    pixeldq: np.ndarray
    groupdq: np.ndarray


def linearize_ramp(
    raw: np.ndarray,
    *,
    groupdq: np.ndarray | None = None,
    pixeldq: np.ndarray | None = None,
    fastaxis: int,
    slowaxis: int,
    nframes: int = 1,
    threads: int = 1,
    **arrays,
) -> RampResult:
    """Linearize a whole raw ramp held in memory.

    Parameters
    ----------
    raw : ndarray, (nints, ngroups, ny, nx)
        Raw ramp (DN), uint16 or float32.
    groupdq : ndarray of uint8, optional
        GROUPDQ of the input.
    pixeldq : ndarray of uint32, optional
        PIXELDQ of the input.
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS``.
    nframes : int
        Frames averaged per group.
    threads : int
        Threads per group.
    **arrays
        ``mask_dq``, ``saturation``, ``saturation_dq``, ``superbias``, ``superbias_dq``,
        ``coeffs``, ``linearity_dq`` (see `prepare_calibration`; not modified).

    Returns
    -------
    RampResult
    """
    nints, ngroups = raw.shape[:2]
    engine = RampLinearizer(
        prepare_calibration(pixeldq=pixeldq, **arrays),
        fastaxis=fastaxis,
        slowaxis=slowaxis,
        ngroups=ngroups,
        nframes=nframes,
        threads=threads,
    )
    sci = np.empty(raw.shape, np.float32)
    sb = np.empty(raw.shape, np.float32)
    gdq_out = np.empty(raw.shape, np.uint8)
    try:
        for i in range(nints):
            engine.start_integration()
            for g in range(ngroups):
                gin = None if groupdq is None else groupdq[i, g]
                for k, plane in engine.process_group(raw[i, g], sci[i, g], sb[i, g], gin):
                    gdq_out[i, k] = plane
            for k, plane in engine.finish_integration():
                gdq_out[i, k] = plane
    finally:
        engine.close()
    return RampResult(sci, sb, engine.pixeldq, gdq_out)
