"""Unit tests of mirage_data.ramp (the algorithms, on arrays).

Small arrays where the algorithm allows (saturation, linearity, medians, clipping), compared
with straightforward re-implementations or with stcal's own functions; full frames where the
pipeline's layout needs them (reference pixels). stcal, stdatamodels and scipy come with the
test extra (jwst): their absence fails these tests. The reference side always uses the
pipeline's own flag values (``stdatamodels.jwst.datamodels.dqflags``), never ours.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.stats
from stcal.linearity.linearity import linearity_correction
from stcal.saturation.saturation import flag_saturated_pixels
from stdatamodels.jwst.datamodels import dqflags

import mirage_data.ramp as rc
from mirage_data.calibration.dq_def import apply_dq_definitions
from mirage_data.ramp.refpix import _side_median, _sigma_clipped_mean
from mirage_data.ramp.saturation import _grow_points

#: The pipeline's flags (reference side) and the pipeline's A-to-D limit.
PIPE = dqflags.pixel
DNU, SAT, AD = PIPE["DO_NOT_USE"], PIPE["SATURATED"], PIPE["AD_FLOOR"]
ATOD_LIMIT = 65535.0


def test_flag_values_are_the_pipelines():
    assert rc.DQ == dict(dqflags.pixel)
    assert rc.GROUP_DQ == dict(dqflags.group)
    assert rc.ATOD_LIMIT == ATOD_LIMIT


# ---------------------------------------------------------------------------------------------
# DQ


def test_dq_definitions_map_by_name_and_drop_unknown_bits():
    dq = np.array([[1, 2, 4, 8, 16, 3]], np.uint32)
    dq_def = np.array(
        [(1, "DO_NOT_USE"), (2, "DEAD"), (4, "HOT"), (8, "NOT_A_FLAG")],
        dtype=[("VALUE", np.uint32), ("NAME", "U20")],
    )
    out = apply_dq_definitions(dq, dq_def)
    assert out.tolist() == [[DNU, PIPE["DEAD"], PIPE["HOT"], 0, 0, DNU | PIPE["DEAD"]]]
    assert apply_dq_definitions(dq, None) is dq
    assert apply_dq_definitions(dq, dq_def[:0]) is dq


def test_initialize_dq_ors_mask_and_propagates_do_not_use():
    mask = np.array([[0, DNU, PIPE["HOT"], DNU | PIPE["DEAD"]]], np.uint32)
    pdq = np.array([[PIPE["WARM"], 0, 0, 0]], np.uint32)
    gdq = np.zeros((2, 1, 4), np.uint8)
    pdq2, gdq2 = rc.initialize_dq(mask, pdq, gdq)
    assert pdq2.tolist() == [[PIPE["WARM"], DNU, PIPE["HOT"], DNU | PIPE["DEAD"]]]
    assert gdq2[:, 0].tolist() == [[0, 1, 0, 1]] * 2


# ---------------------------------------------------------------------------------------------
# Saturation


def _dilate_brute(mask, n):
    out = np.zeros_like(mask)
    ny, nx = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        out[max(0, y - n) : y + n + 1, max(0, x - n) : x + n + 1] = True
    return out


@pytest.mark.parametrize("n", [1, 2])
def test_grow_flags_is_a_box_dilation_clipped_at_edges(n):
    rng = np.random.default_rng(0)
    mask = rng.random((23, 31)) < 0.03
    mask[0, 0] = mask[-1, 5] = mask[7, -1] = True
    expected = _dilate_brute(mask, n)
    np.testing.assert_array_equal(rc.grow_flags(mask, n), expected)
    grown = np.zeros_like(mask)
    _grow_points(grown, np.flatnonzero(mask), n)
    np.testing.assert_array_equal(grown, expected)


def test_read_pattern_ignores_nskip_like_the_step():
    assert rc.read_pattern(2, 1) == [[1], [2]]
    assert rc.read_pattern(2, 4) == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_prepare_saturation_nan_and_no_sat_check():
    thr = np.array([[100.0, np.nan, 5.0]], np.float32)
    dq = np.array([[0, 0, PIPE["NO_SAT_CHECK"]]], np.uint32)
    ref = rc.prepare_saturation(thr, dq)
    assert ref.threshold.tolist() == [[100.0, ATOD_LIMIT + 1, ATOD_LIMIT + 1]]
    assert ref.pixeldq.tolist() == [[0, PIPE["NO_SAT_CHECK"], PIPE["NO_SAT_CHECK"]]]
    assert ref.no_sat_check.tolist() == [[False, True, True]]
    assert np.isnan(thr[0, 1])  # copy=True leaves the input alone


def _small_ramp(rng, nints, ngroups, ny=20, nx=24):
    data = rng.uniform(1000, 40000, (nints, ngroups, ny, nx)).astype(np.float32)
    data = np.sort(data, axis=1)  # ramps go up
    data[:, :, 3, 4] = np.linspace(40000, 70000, ngroups)  # saturates midway
    data[:, :, 0, 0] = 65000.0  # corner, saturated from the start
    data[:, 1:, 10, 23] = 64000.0  # edge
    data[:, 0, 15, 7] = 42000.0  # a jump in group 1 (index 1) that saturates at index 2
    data[:, 1, 15, 7] = 52500.0
    data[:, 2:, 15, 7] = 65000.0
    data[:, -1, 5, 5] = 0.0  # A/D floor
    return data


@pytest.mark.parametrize("nframes", [1, 4])
@pytest.mark.parametrize("grow", [0, 1, 2])
def test_saturation_equals_stcal(nframes, grow):
    rng = np.random.default_rng(nframes * 10 + grow)
    nints, ngroups = 2, 5
    data = _small_ramp(rng, nints, ngroups)
    shape = data.shape[-2:]
    thr = rng.uniform(52000, 60000, shape).astype(np.float32)
    thr[2, 2] = np.nan
    sat_dq = np.zeros(shape, np.uint32)
    sat_dq[0, 0] = PIPE["NO_SAT_CHECK"]
    bias = rng.normal(12000, 20, shape).astype(np.float32)
    bias[15, 8] = np.nan
    gdq0 = np.zeros(data.shape, np.uint8)
    gdq0[:, :, 6, 6] = DNU
    pattern = rc.read_pattern(ngroups, nframes)

    gdq_stcal, pdq_stcal, _ = flag_saturated_pixels(
        data.copy(),
        gdq0.copy(),
        np.zeros(shape, np.uint32),
        thr.copy(),
        sat_dq.copy(),
        ATOD_LIMIT,
        PIPE,
        n_pix_grow_sat=grow,
        read_pattern=pattern,
        bias=bias.copy(),
    )
    ref = rc.prepare_saturation(thr, sat_dq, bias)
    ours = rc.flag_saturation(data, gdq0.copy(), ref, nframes=nframes, n_pix_grow_sat=grow)
    np.testing.assert_array_equal(ours, gdq_stcal)
    np.testing.assert_array_equal(ref.pixeldq, pdq_stcal)
    assert (ours & SAT).any() and (ours & AD).any()


def test_saturation_state_streams_in_tiles_like_whole_groups():
    rng = np.random.default_rng(3)
    data = _small_ramp(rng, 1, 4)[0]
    thr = np.full(data.shape[-2:], 55000.0, np.float32)
    ref = rc.prepare_saturation(thr, np.zeros(thr.shape, np.uint32))
    pattern = rc.read_pattern(4, 2)
    whole = rc.SaturationState.start(ref, 4, pattern)
    tiled = rc.SaturationState.start(ref, 4, pattern)
    out_whole, out_tiled = [], []
    for g in range(4):
        a = np.zeros(thr.shape, np.uint8)
        out_whole += rc.flag_saturation_group(data[g], a, whole)
        b = np.zeros(thr.shape, np.uint8)
        tiles = [slice(0, 7), slice(7, 15), slice(15, 20)]
        new = np.concatenate([tiled.compare(data[g][t], t) for t in tiles])
        tiled.grow(new)
        tiled.begin_flags()
        for t in tiles:
            tiled.flag(b[t], data[g][t], t)
        out_tiled += tiled.advance(b, data[g])
    out_whole += whole.finish()
    out_tiled += tiled.finish()
    assert [g for g, _ in out_whole] == [0, 1, 2, 3] == [g for g, _ in out_tiled]
    for (_, a), (_, b) in zip(out_whole, out_tiled, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Superbias and linearity


def test_superbias_nan_becomes_zero():
    bias = np.array([[1.0, np.nan]], np.float32)
    clean = rc.prepare_superbias(bias)
    assert clean.tolist() == [[1.0, 0.0]] and np.isnan(bias[0, 1])
    data = np.array([[[10.0, 10.0]]], np.float32)
    assert rc.subtract_superbias(data, clean).tolist() == [[[9.0, 10.0]]]


def test_prepare_linearity_identity_and_flags():
    coeffs = np.ones((3, 1, 4), np.float32)
    coeffs[1, 0, 2] = 0.0  # zero slope
    coeffs[2, 0, 3] = np.nan
    dq = np.array([[PIPE["NO_LIN_CORR"], 0, 0, 0]], np.uint32)
    fixed, flags = rc.prepare_linearity(coeffs, dq)
    identity = [0.0, 1.0, 0.0]
    for x in (0, 2, 3):
        assert fixed[:, 0, x].tolist() == identity
    assert fixed[:, 0, 1].tolist() == [1.0, 1.0, 1.0]
    assert (flags[0] & PIPE["NO_LIN_CORR"] != 0).tolist() == [True, False, True, True]
    with pytest.raises(ValueError, match="ncoeffs"):
        rc.prepare_linearity(np.ones((1, 2, 2), np.float32), np.zeros((2, 2), np.uint32))


def test_linearity_equals_stcal():
    rng = np.random.default_rng(7)
    data = rng.uniform(-100, 60000, (2, 3, 16, 16)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[:, 2, :4] = SAT
    coeffs = np.stack(
        [
            rng.normal(0, 2, (16, 16)),
            rng.normal(1, 0.01, (16, 16)),
            rng.normal(2e-6, 1e-7, (16, 16)),
            rng.normal(3e-11, 1e-12, (16, 16)),
            rng.normal(-1e-16, 1e-17, (16, 16)),
        ]
    ).astype(np.float32)
    coeffs[2, 5, 5] = np.nan
    coeffs[1, 6, 6] = 0
    lin_dq = np.zeros((16, 16), np.uint32)
    lin_dq[7, 7] = PIPE["NO_LIN_CORR"]
    expected, pdq, _ = linearity_correction(
        data.copy(), gdq, np.zeros((16, 16), np.uint32), coeffs.copy(), lin_dq, PIPE
    )
    fixed, flags = rc.prepare_linearity(coeffs, lin_dq)
    ours = rc.apply_linearity(data.copy(), gdq, fixed)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(flags, pdq)
    given = np.empty(data.shape, np.float32)
    rc.apply_linearity(data, gdq, fixed, out=given)
    np.testing.assert_array_equal(given, expected)


# ---------------------------------------------------------------------------------------------
# Reference pixels


@pytest.mark.parametrize("fast,slow", [(1, 2), (-1, 2), (1, -2), (-2, 1), (2, -1), (-2, -1)])
def test_to_detector_matches_the_pipeline_transform(fast, slow):
    image = np.arange(12).reshape(3, 4)
    if abs(fast) == 1:
        expected = image[:: np.sign(slow), :: np.sign(fast)]
    else:
        expected = np.swapaxes(image[:: np.sign(fast), :: np.sign(slow)], -2, -1)
    np.testing.assert_array_equal(rc.to_detector(image, fast, slow), expected)
    assert np.shares_memory(rc.to_detector(image, fast, slow), image)


def _naive_median_filter(data, bad, length):
    # jwst's NIRDataset.median_filter written out
    nrows = data.shape[0]
    odd = length + 1 if length % 2 == 0 else length
    buf = odd // 2

    def reflect(a):
        r = np.zeros((nrows + odd - 1,) + a.shape[1:], a.dtype)
        r[buf : buf + nrows] = a
        r[:buf] = a[buf:0:-1]
        r[-buf:] = a[-2 : -(buf + 2) : -1]
        return r

    d, b = reflect(data), reflect(bad)
    out = np.zeros(nrows)
    for i in range(nrows):
        w = d[i : i + length][~b[i : i + length]]
        out[i] = np.median(w) if w.size else np.nan
    return out


@pytest.mark.parametrize("length", [11, 4, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_side_median_equals_running_median(length, dtype):
    rng = np.random.default_rng(length)
    data = rng.normal(0, 50, (60, 4)).astype(dtype)
    bad = rng.random((60, 4)) < 0.2
    bad[20:35] = True  # windows without good pixels give NaN
    ours = _side_median(data, bad, length)
    expected = _naive_median_filter(data, bad, length)
    np.testing.assert_array_equal(ours, expected)


def test_sigma_clipped_mean_like_scipy_sigmaclip():
    rng = np.random.default_rng(1)
    values = rng.normal(10, 2, (4, 256)).astype(np.float32)
    values[0, :5] = 500
    bad = np.zeros(values.shape, bool)
    bad[1, 10:20] = True
    expected = scipy.stats.sigmaclip(values[~bad], 3.0, 3.0)[0].mean()
    ours = _sigma_clipped_mean(values, bad, 3.0)
    assert ours == expected and isinstance(ours, np.float32)
    constant = np.full((4, 8), 7.0, np.float32)
    zero_spread = _sigma_clipped_mean(constant, np.zeros((4, 8), bool), 3.0)
    assert zero_spread == 7.0 and isinstance(zero_spread, np.float64)  # the pipeline's float64 branch
    assert _sigma_clipped_mean(constant, np.ones((4, 8), bool), 3.0) is None


def test_refpix_removes_amplifier_offsets_and_row_drift():
    ny = nx = 2048
    det = np.zeros((ny, nx), np.float32)
    offsets = {}
    for amp in range(4):
        for parity in (0, 1):
            offsets[amp, parity] = 10.0 * amp + 3.0 * parity + 1.0
            det[:, amp * 512 + parity : (amp + 1) * 512 : 2] += offsets[amp, parity]
    # a smooth row drift, ~0 on the top and bottom reference rows
    rows = (5 * np.sin(np.arange(ny) * 4 * np.pi / ny)).astype(np.float32)
    det += rows[:, None]
    bad = np.zeros((ny, nx), bool)
    bad[-4:, 0:512:2] = True  # top odd columns of amplifier A unusable: bottom alone is used
    fast, slow = -2, 1
    # DMS image whose detector view is `det`
    image = np.ascontiguousarray(np.swapaxes(det, 0, 1)[:: np.sign(fast), :: np.sign(slow)])
    bad_dms = np.ascontiguousarray(np.swapaxes(bad, 0, 1)[:: np.sign(fast), :: np.sign(slow)])
    np.testing.assert_array_equal(rc.to_detector(image, fast, slow), det)
    geometry = rc.FrameGeometry.full_frame(fast, slow)
    corrected = rc.correct_reference_pixels(image.copy(), bad_dms, geometry, float64=True)
    # the top/bottom means remove the offsets, the running median of the side columns the drift
    out = rc.to_detector(corrected, fast, slow)
    assert np.abs(out[100:-100]).max() < 0.2
    assert np.abs(rc.to_detector(image, fast, slow)[100:-100]).max() > 30
    corr = rc.compute_refpix_correction(image, bad_dms, geometry)
    assert corr.transposed and corr.side is not None


def test_refpix_none_when_all_reference_pixels_bad():
    image = np.full((2048, 2048), 5.0, np.float32)
    bad = np.ones((2048, 2048), bool)
    out = rc.correct_reference_pixels(image.copy(), bad, rc.FrameGeometry.full_frame(1, 2))
    # no usable reference pixels: no top/bottom correction, side signal 0 (both sides NaN)
    np.testing.assert_array_equal(out, image)


# ---------------------------------------------------------------------------------------------
# The chain


@pytest.fixture(scope="module")
def small_calibration():
    import jwst_reference_files as J

    rng = np.random.default_rng(9)
    clean_bias = J.make_superbias("NRCB2")
    bias, bias_dq = J.make_superbias_dq(clean_bias)
    sat, sat_dq = J.make_saturation()
    mask, mask_def = J.make_mask_dq()
    coeffs, lin_dq = J.make_linearity(4)
    raw = J.make_ramp("NRCB2", ngroups=3, nints=1, seed=int(rng.integers(100)), bias=clean_bias)
    return dict(
        raw=raw,
        mask_dq=apply_dq_definitions(mask, mask_def),
        saturation=sat,
        saturation_dq=sat_dq,
        superbias=bias,
        superbias_dq=bias_dq,
        coeffs=coeffs,
        linearity_dq=lin_dq,
    )


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the tasks submitted to it and the threads that ran them."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submits = 0
        self.threads = set()
        self._count = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self._count:
            self.submits += 1

        def run():
            self.threads.add(threading.get_ident())
            return fn(*args, **kwargs)

        return super().submit(run)


def test_tiles_run_through_the_given_executor_and_do_not_change_results(small_calibration):
    arrays = dict(small_calibration)
    raw = arrays.pop("raw")
    base = rc.linearize_ramp(raw, fastaxis=-1, slowaxis=2, nframes=2, **arrays)
    geometry = rc.FrameGeometry.full_frame(-1, 2)
    with CountingExecutor(2) as pool:
        engine = rc.RampLinearizer(
            rc.prepare_calibration(**arrays), geometry=geometry, ngroups=3, nframes=2, tile_rows=37, executor=pool
        )
        engine.start_integration()
        tiles = []
        sb = np.empty(raw.shape[-2:], np.float32)
        done = []
        for g in range(3):

            def sink(rows, tile, g=g):
                tiles.append((g, rows, tile.copy()))

            done += [(k, p.copy()) for k, p in engine.process_group(raw[0, g], sink, sb)]
            np.testing.assert_array_equal(sb, base.sbandrefpix[0, g])
        done += engine.finish_integration()
    ntiles = -(-2048 // 37)
    assert pool.submits == 3 * 2 * ntiles  # both passes of every group, tile by tile
    assert len(pool.threads) >= 1 and threading.get_ident() not in pool.threads
    assert sorted(k for k, _ in done) == [0, 1, 2]
    for k, plane in done:
        np.testing.assert_array_equal(plane, base.groupdq[0, k])
    for g, rows, tile in tiles:
        assert tile.dtype == np.float32
        np.testing.assert_array_equal(tile, base.sci[0, g][rows])
    assert sum(t.shape[0] for g, _, t in tiles if g == 0) == 2048
    # the calibration arrays given to linearize_ramp are left as they were
    assert np.isnan(small_calibration["superbias"]).any()


def test_engine_rejects_misuse(small_calibration):
    arrays = dict(small_calibration)
    arrays.pop("raw")
    geometry = rc.FrameGeometry.full_frame(1, 2)
    engine = rc.RampLinearizer(rc.prepare_calibration(**arrays), geometry=geometry, ngroups=2)
    plane = np.zeros((2048, 2048), np.uint16)
    out = np.empty((2048, 2048), np.float32)
    with pytest.raises(RuntimeError, match="start_integration"):
        engine.process_group(plane, out, out)
    engine.start_integration()
    with pytest.raises(ValueError, match="shape"):
        engine.process_group(np.zeros((10, 10), np.uint16), out, out)
    with pytest.raises(ValueError, match="geometry is for frames of"):
        rc.RampLinearizer(rc.prepare_calibration(**arrays), geometry=rc.FrameGeometry((256, 256)), ngroups=2)
    with pytest.raises(ValueError, match="missing reference data: linearity"):
        b = rc.CalibrationBuilder((2048, 2048))
        b.add_mask(arrays["mask_dq"])
        b.add_saturation(arrays["saturation"], arrays["saturation_dq"], copy=True)
        b.add_superbias(arrays["superbias"], arrays["superbias_dq"], copy=True)
        b.build()


# ---------------------------------------------------------------------------------------------
# A frame other than 2048 x 2048


def _jwst_refpix(data, pixeldq, geometry):
    """jwst's NIR refpix (full-frame algorithm, its own methods) on frames of *geometry*.

    jwst's NIRDataset names its amplifier sections for 2048 x 2048 frames; only that table is
    scaled here (4-pixel borders, ``geometry.amp_width`` columns per amplifier). The group
    buffer is reused from group to group as in ``do_fullframe_corrections`` (float32 for the
    very first group, float64 after), and the side signal is the step's running median.
    """
    from jwst.refpix.reference_pixels import NIRDataset

    rows, cols = geometry.detector_shape
    ds = object.__new__(NIRDataset)
    ds.siglimit, ds.odd_even_columns, ds.is_irs2, ds.amplifiers = 3.0, True, False, "ABCD"
    ds.side_smoothing_length, ds.side_gain = 11, 1.0
    w = geometry.amp_width
    ds.reference_sections = {
        a: {
            "top": (rows - 4, rows, k * w, (k + 1) * w),
            "bottom": (0, 4, k * w, (k + 1) * w),
            "data": (0, rows, k * w, (k + 1) * w),
        }
        for k, a in enumerate("ABCD")
    }
    ds.pixeldq = rc.to_detector(pixeldq, geometry.fastaxis, geometry.slowaxis)
    out = data.copy()
    buffer = None
    for i in range(data.shape[0]):
        for g in range(data.shape[1]):
            det = rc.to_detector(data[i, g], geometry.fastaxis, geometry.slowaxis)
            if buffer is None:
                buffer = np.zeros(det.shape, data.dtype)
            buffer[:, :] = det
            ds.do_top_bottom_correction(buffer, ds.get_refvalues(buffer))
            left = ds.calculate_side_ref_signal(buffer, 0, 3)
            right = ds.calculate_side_ref_signal(buffer, cols - 4, cols - 1)
            side = np.zeros((rows, cols))
            side[:, :] = ds.combine_with_nans(left, right)[:, None]
            buffer = ds.apply_side_correction(buffer, side)
            rc.to_detector(out[i, g], geometry.fastaxis, geometry.slowaxis)[:, :] = buffer
    return out


@pytest.mark.parametrize("fast, slow", [(-1, 2), (2, -1)])
def test_small_four_amplifier_frame_equals_stcal_and_jwst(fast, slow):
    """A 256 x 256 frame read by 4 amplifiers of 64 columns: every step against the pipeline's
    own functions (stcal saturation and linearity, jwst refpix methods, pipeline flags)."""
    n, ngroups = 256, 4
    geometry = rc.FrameGeometry((n, n), fast, slow, n_amps=4)
    rng = np.random.default_rng(abs(fast * 10 + slow))
    det_cols = np.repeat(rng.normal(0, 40, 4), 64) + np.tile([0.0, 3.0], 128)  # amplifier and odd/even offsets
    clean_bias = (12000 + rng.normal(0, 30, (n, n))).astype(np.float32)
    bias = clean_bias.copy()
    bias[17, 40] = np.nan
    raw = np.empty((1, ngroups, n, n), np.float32)
    for g in range(ngroups):
        det = np.zeros((n, n), np.float32)
        det += (det_cols * (1 + 0.1 * g))[None, :] + np.cumsum(rng.normal(0, 1, n))[:, None]
        plane = clean_bias.copy()
        rc.to_detector(plane, fast, slow)[:, :] += det  # offsets along detector columns and rows
        raw[0, g] = np.rint(plane + 20 * (g + 1) + rng.normal(0, 5, (n, n)))
    raw[0, 2:, 100, 100] = 65000  # saturates in group 2, neighbours grow
    raw[0, 1:, 0, 77] = 65000  # on a reference row
    raw[0, 3, 50, 60] = 0  # A/D floor
    mask = np.zeros((n, n), np.uint32)
    border = np.zeros((n, n), bool)
    border[:4] = border[-4:] = border[:, :4] = border[:, -4:] = True
    mask[border] |= PIPE["REFERENCE_PIXEL"]
    mask[rng.integers(0, n, 40), rng.integers(0, n, 40)] |= DNU
    thr = rng.uniform(52000, 60000, (n, n)).astype(np.float32)
    thr[9, 9] = np.nan
    sat_dq = np.zeros((n, n), np.uint32)
    sat_dq[30, 30] = PIPE["NO_SAT_CHECK"]
    bias_dq = np.zeros((n, n), np.uint32)
    bias_dq[5, 200] = DNU | PIPE["UNRELIABLE_BIAS"]
    coeffs = np.stack([rng.normal(0, 2, (n, n)), rng.normal(1, 0.01, (n, n)), rng.normal(2e-6, 1e-7, (n, n))]).astype(
        np.float32
    )
    coeffs[1, 70, 70] = 0
    lin_dq = np.zeros((n, n), np.uint32)
    lin_dq[71, 71] = PIPE["NO_LIN_CORR"]

    ours = rc.linearize_ramp(
        raw,
        geometry=geometry,
        tile_rows=50,
        mask_dq=mask,
        saturation=thr,
        saturation_dq=sat_dq,
        superbias=bias,
        superbias_dq=bias_dq,
        coeffs=coeffs,
        linearity_dq=lin_dq,
    )

    # the pipeline, step by step, with its own functions and flags
    pdq = mask.copy()
    gdq = np.broadcast_to((mask & DNU).astype(np.uint8), raw.shape).copy()
    gdq, pdq, _ = flag_saturated_pixels(
        raw.copy(),
        gdq,
        pdq,
        thr.copy(),
        sat_dq.copy(),
        ATOD_LIMIT,
        PIPE,
        n_pix_grow_sat=1,
        read_pattern=[[g + 1] for g in range(ngroups)],
        bias=bias.copy(),
    )
    data = raw - np.where(np.isnan(bias), 0, bias)
    pdq = pdq | bias_dq
    data = _jwst_refpix(data, pdq, geometry)
    sb = raw - data
    sci, pdq, _ = linearity_correction(data, gdq, pdq, coeffs.copy(), lin_dq, PIPE)

    np.testing.assert_array_equal(ours.groupdq, gdq)
    np.testing.assert_array_equal(ours.pixeldq, pdq)
    np.testing.assert_array_equal(ours.sbandrefpix, sb)
    np.testing.assert_array_equal(ours.sci, sci)
    refpix_signal = sb - np.where(np.isnan(bias), 0, bias)
    assert (gdq & SAT).any() and (gdq & AD).any() and np.abs(refpix_signal).max() > 20
