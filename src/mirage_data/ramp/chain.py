"""The chain of ramp steps in the pipeline's order, streamed one group at a time.

`CalibrationBuilder` prepares the four reference files' arrays as the steps use them;
`RampLinearizer` runs dq_init, saturation, superbias, refpix and linearity on one group at a
time, in row tiles that stay in cache (optionally on threads of an executor the caller owns);
`linearize_ramp` runs it on a ramp in memory. What carries from group to group: saturation
flagging (`SaturationState`) and the refpix step's precision (see `refpix`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from .dqflags import DO_NOT_USE
from .geometry import FrameGeometry
from .linearity import apply_linearity, prepare_linearity
from .refpix import ReferenceStrips, compute_refpix_correction
from .saturation import SaturationReference, SaturationState, prepare_saturation, read_pattern
from .superbias import prepare_superbias

__all__ = [
    "PreparedCalibration",
    "CalibrationBuilder",
    "prepare_calibration",
    "RampLinearizer",
    "RampResult",
    "linearize_ramp",
]


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
        Frame shape (DMS orientation).
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
        shape: tuple[int, int],
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
    geometry : FrameGeometry
        Orientation, reference borders and amplifiers of the frames.
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
    executor : concurrent.futures.Executor, optional
        Runs the tiles of a group (numpy releases the GIL in its loops, so threads share the
        work); it must run tasks in this process (threads). Not shut down here: the caller
        owns it. None: the tiles run one after the other in the calling thread.
    """

    def __init__(
        self,
        calibration: PreparedCalibration,
        *,
        geometry: FrameGeometry,
        ngroups: int,
        nframes: int = 1,
        n_pix_grow_sat: int = 1,
        use_readpatt: bool = True,
        refpix: dict | None = None,
        tile_rows: int = 128,
        executor: Executor | None = None,
    ) -> None:
        self.calibration = calibration
        self.shape = calibration.group_base.shape
        if tuple(geometry.shape) != tuple(self.shape):
            raise ValueError(f"geometry is for frames of {geometry.shape}; the calibration's are {self.shape}")
        self.geometry = geometry
        self.ngroups, self.nframes = int(ngroups), int(nframes)
        self.n_pix_grow_sat = n_pix_grow_sat
        self.use_readpatt = use_readpatt
        self.pattern = read_pattern(self.ngroups, self.nframes) if use_readpatt else None
        self.refpix = dict(refpix or {})
        self.tile_rows = max(1, int(tile_rows))
        self.executor = executor
        self._local = threading.local()  # per-thread tile buffers
        self._bias_strips = ReferenceStrips.from_group(calibration.bias, geometry)
        self._bad_strips = ReferenceStrips.from_group(calibration.refpix_bad, geometry)
        self._gdq = [np.empty(self.shape, np.uint8), np.empty(self.shape, np.uint8)]
        self._next = 0
        self.state: SaturationState | None = None
        self._groups_done = 0  # the refpix step works in float32 on the very first group only

    @property
    def pixeldq(self) -> np.ndarray | None:
        """Final PIXELDQ (uint32), if kept."""
        return self.calibration.pixeldq

    def for_ngroups(self, ngroups: int) -> RampLinearizer:
        """A linearizer sharing this one's calibration (and executor) for ramps of *ngroups* groups.

        Fresh state, as a new pipeline run (Mirage linearizes zero frames as one-group ramps
        of their own).
        """
        return RampLinearizer(
            self.calibration,
            geometry=self.geometry,
            ngroups=ngroups,
            nframes=self.nframes,
            n_pix_grow_sat=self.n_pix_grow_sat,
            use_readpatt=self.use_readpatt,
            refpix=self.refpix,
            tile_rows=self.tile_rows,
            executor=self.executor,
        )

    def start_integration(self) -> None:
        """Reset the carried saturation state."""
        self.state = SaturationState.start(self.calibration.saturation, self.ngroups, self.pattern, self.n_pix_grow_sat)

    def finish_integration(self) -> list[tuple[int, np.ndarray]]:
        """GROUPDQ planes still held by the saturation state, now final."""
        out = self.state.finish()
        self.state = None
        return out

    def _run(self, job) -> list:
        """Run job(rows) over the tiles of the frame, through the executor if there is one."""
        ny = self.shape[0]
        tiles = [slice(r, min(r + self.tile_rows, ny)) for r in range(0, ny, self.tile_rows)]
        if self.executor is None or len(tiles) == 1:
            return [job(t) for t in tiles]
        futures = [self.executor.submit(job, t) for t in tiles]
        return [f.result() for f in futures]

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
        sci_out, sbandrefpix_out : ndarray (ny, nx) of float32, or callable(rows, tile)
            Receive the linearized group and raw minus the group after superbias and
            reference-pixel correction (DN): arrays are filled; a callable is given each row
            range (slice) and its float32 tile, possibly from several threads at once; the
            tile is reused after the call returns.
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

        if groupdq_in is None:  # the mask brings no SATURATED flags: nothing given to grow
            found = self._run(lambda rows: (state.compare(raw[rows], rows), None))
        else:
            found = self._run(lambda rows: (state.compare(raw[rows], rows), state.given(gdq[rows], rows)))
        given = [g for _, g in found if g is not None]
        state.grow(np.concatenate([n for n, _ in found]), np.concatenate(given) if given else None)
        state.begin_flags()

        strips = ReferenceStrips.from_group(raw, self.geometry)
        strips = ReferenceStrips(*(a.astype(np.float32) for a in vars(strips).values())) - self._bias_strips
        correction = compute_refpix_correction(
            strips, self._bad_strips, self.geometry, float64=self._groups_done > 0, **self.refpix
        )
        self._groups_done += 1
        bias, coeffs = cal.bias, cal.coeffs
        nx = self.shape[1]
        sci_call, sb_call = callable(sci_out), callable(sbandrefpix_out)

        def second_pass(rows):
            local = self._local
            if not hasattr(local, "work"):
                n = self.tile_rows
                local.work = np.empty((n, nx), np.float64)
                local.cur = np.empty((n, nx), np.float32)
                local.poly = np.empty((n, nx), np.float32)
                local.sci = np.empty((n, nx), np.float32)
                local.sb = np.empty((n, nx), np.float32)
                local.r32 = np.empty((n, nx), np.float32)
            m = rows.stop - rows.start
            r32 = local.r32[:m]
            np.copyto(r32, raw[rows], casting="unsafe")  # uint16 or float32 -> float32, exact
            gdq_t = gdq[rows]
            state.flag(gdq_t, r32, rows)
            cur = np.subtract(r32, bias[rows], out=local.cur[:m])
            correction.apply(cur, rows, local.work[:m])
            sb_t = local.sb[:m] if sb_call else sbandrefpix_out[rows]
            np.subtract(r32, cur, out=sb_t)
            sci_t = local.sci[:m] if sci_call else sci_out[rows]
            apply_linearity(cur, gdq_t, coeffs[:, rows], out=sci_t, work=local.poly[:m])
            if sb_call:
                sbandrefpix_out(rows, sb_t)
            if sci_call:
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
    geometry: FrameGeometry | None = None,
    fastaxis: int = 1,
    slowaxis: int = 2,
    nframes: int = 1,
    tile_rows: int = 128,
    executor: Executor | None = None,
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
    geometry : FrameGeometry, optional
        Default: frames of *raw*'s shape read with *fastaxis* and *slowaxis*, with all four
        reference borders and four amplifiers (a full frame).
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS`` (when no *geometry* is given).
    nframes : int
        Frames averaged per group.
    tile_rows : int
        Rows per tile.
    executor : concurrent.futures.Executor, optional
        Threads for the tiles (see `RampLinearizer`).
    **arrays
        ``mask_dq``, ``saturation``, ``saturation_dq``, ``superbias``, ``superbias_dq``,
        ``coeffs``, ``linearity_dq`` (see `prepare_calibration`; not modified).

    Returns
    -------
    RampResult
    """
    nints, ngroups = raw.shape[:2]
    if geometry is None:
        geometry = FrameGeometry(raw.shape[-2:], fastaxis, slowaxis)
    engine = RampLinearizer(
        prepare_calibration(pixeldq=pixeldq, **arrays),
        geometry=geometry,
        ngroups=ngroups,
        nframes=nframes,
        tile_rows=tile_rows,
        executor=executor,
    )
    sci = np.empty(raw.shape, np.float32)
    sb = np.empty(raw.shape, np.float32)
    gdq_out = np.empty(raw.shape, np.uint8)
    for i in range(nints):
        engine.start_integration()
        for g in range(ngroups):
            gin = None if groupdq is None else groupdq[i, g]
            for k, plane in engine.process_group(raw[i, g], sci[i, g], sb[i, g], gin):
                gdq_out[i, k] = plane
        for k, plane in engine.finish_integration():
            gdq_out[i, k] = plane
    return RampResult(sci, sb, engine.pixeldq, gdq_out)
