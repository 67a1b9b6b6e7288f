"""The ``saturation`` step (``stcal.saturation.flag_saturated_pixels``), one group at a time.

SATURATED where a pixel reached its threshold in this or an earlier group, grown to its
neighbours; AD_FLOOR|DO_NOT_USE at or below 0 DN; for group-averaged readouts the extra
DO_NOT_USE flags that need the next group (`SaturationState`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dqflags import AD_FLOOR, DO_NOT_USE, NO_SAT_CHECK, SATURATED

__all__ = [
    "ATOD_LIMIT",
    "read_pattern",
    "SaturationReference",
    "prepare_saturation",
    "grow_flags",
    "SaturationState",
    "flag_saturation_group",
    "finish_saturation",
    "flag_saturation",
]

#: Hard limit of the 16-bit A-to-D converter (DN), as in ``jwst.saturation``.
ATOD_LIMIT = 65535.0


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
        SATURATION reference ``DQ`` (standard flag values).
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
    operations, which may each run on row ranges (tiles) of the group: `compare` and `given`
    (which pixels reached their threshold or arrived SATURATED), `grow` (once per group, after
    all compares), `flag`
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
    given_grown: np.ndarray | None = None  # the input's SATURATED flags of this group, grown

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
        now = np.greater_equal(plane, self.reference.threshold[rows])
        tally = self.saturated[rows]
        new = np.greater(now, tally, out=now)  # at the threshold now, not before
        tally |= new
        if not new.any():
            return np.empty(0, np.intp)
        start = (rows.start or 0) * self.saturated.shape[1]
        return np.flatnonzero(new) + start

    def given(self, gdq: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Flat indices (in the frame) of pixels already SATURATED in *gdq* (rows *rows* of
        this group's GROUPDQ as it arrives, e.g. flagged in the raw file)."""
        if self.n_pix_grow_sat <= 0:
            return np.empty(0, np.intp)  # nothing to grow: the flags are there already
        found = np.flatnonzero(gdq & SATURATED)
        return found + (rows.start or 0) * self.saturated.shape[1] if found.size else found

    def grow(self, new: np.ndarray, given: np.ndarray | None = None) -> None:
        """Add the pixels that saturated in this group (and their neighbours) to `grown`.

        *given*: flat indices from `given`. stcal grows every SATURATED flag of the group's
        plane, those of the input too, but those only for this group; they are grown over
        the whole frame here, so that the flags cross the tiles' edges as in the pipeline.
        """
        self.given_grown = None
        if given is not None and given.size:
            self.given_grown = np.zeros(self.saturated.shape, bool)
            _grow_points(self.given_grown, given, self.n_pix_grow_sat)
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
        if self.given_grown is not None:
            grown = grown | self.given_grown[rows]
        # OR-ing 0/1 masks times the flag is several times faster than ufuncs with where=
        flags = np.multiply(grown.view(np.uint8), SATURATED)
        gdq |= flags
        floor = np.less_equal(plane, 0)
        gdq |= np.multiply(floor.view(np.uint8), AD_FLOOR | DO_NOT_USE, out=flags)
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
        self.given_grown = None
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
    state.grow(state.compare(plane), state.given(gdq))
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
