"""Our linearization against the real JWST pipeline (jwst 3.0 steps), number for number.

The jwst steps (DQInit, Saturation, SuperBias, RefPix, Linearity, with override reference
files, as Mirage runs them) are run fully offline in a subprocess: no step parameters from
CRDS (``STPIPE_DISABLE_CRDS_STEPPARS``), CRDS in "serverless" mode with a minimal local cache
that answers the "context used" query each step makes (see
`jwst_reference_files.offline_crds_environment`). The ramps are synthetic full frames built to
reach every branch (see `jwst_reference_files`). Requirement: max |difference| <= 1e-3 DN on
SCI and SBANDREFPIX, identical PIXELDQ and GROUPDQ. (In practice the results are identical.)

`test_golden_without_jwst` checks a deterministic ramp against numbers the pipeline produced
(recomputed by `test_golden_numbers_match_jwst` where jwst is installed), so that the chain is
checked even without jwst.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from astropy.io import fits

import jwst_reference_files as J
import mirage_data.ramp as rc
from mirage_data.calibration.reference_files import CalibrationPaths, read_calibration
from mirage_data.darks.linearize import linearize_dark

TOLERANCE = 1e-3  # DN

_HAVE_JWST = importlib.util.find_spec("jwst") is not None


@pytest.fixture
def _require_jwst():
    # jwst is a declared test dependency: its absence fails these tests, it never skips them.
    if not _HAVE_JWST:
        pytest.fail('the pipeline equivalence tests need jwst: pip install -e ".[test]"')


needs_jwst = pytest.mark.usefixtures("_require_jwst")


def _compare(ours: dict, pipe: dict, label: str) -> dict:
    diffs = {}
    for key in ("sci", "sbandrefpix"):
        assert ours[key].shape == pipe[key].shape, (label, key)
        diffs[key] = float(np.max(np.abs(ours[key].astype(np.float64) - pipe[key])))
        assert diffs[key] <= TOLERANCE, f"{label}: max |{key} difference| = {diffs[key]} DN"
    for key in ("pixeldq", "groupdq"):
        if key in ours:
            bad = np.count_nonzero(ours[key] != pipe[key])
            assert bad == 0, f"{label}: {bad} {key} values differ"
    print(f"{label}: max |SCI diff| {diffs['sci']:.3g} DN, max |SBANDREFPIX diff| {diffs['sbandrefpix']:.3g} DN")
    return diffs


def _read_output(path) -> dict:
    with fits.open(path) as h:
        return {
            "sci": h["SCI"].data.astype(np.float32),
            "sbandrefpix": h["SBANDREFPIX"].data.astype(np.float32),
            "zeroframe": h["ZEROFRAME"].data.astype(np.float32),
            "zerosbandrefpix": h["ZEROSBANDREFPIX"].data.astype(np.float32),
            "pixeldq": h["PIXELDQ"].data,
            "groupdq": h["GROUPDQ"].data,
            "header": h[0].header,
        }


@pytest.fixture(scope="module")
def crds_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("crds_cache")


# ---------------------------------------------------------------------------------------------
# Cases run through jwst


@needs_jwst
def test_nircam_rapid_file_equals_pipeline(tmp_path, crds_cache):
    """NRCA1, RAPID, 4 groups, every feature; the file written by linearize_dark."""
    refs = J.write_reference_set(tmp_path / "refs", "NRCA1")
    raw = J.write_raw_dark(tmp_path / "raw_uncal.fits", "NRCA1", ngroups=4)
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    out = linearize_dark(raw, tmp_path / "lin.fits", include_dq=True, **refs)
    ours = _read_output(out)
    _compare(ours, pipe, "NRCA1 RAPID 1x4 (file)")
    # Mirage's ZEROFRAME for one-frame groups is group 0
    np.testing.assert_array_equal(ours["zeroframe"], pipe["sci"][:, 0])
    np.testing.assert_array_equal(ours["zerosbandrefpix"], pipe["sbandrefpix"][:, 0])
    for key, name in (
        ("R_MASK", "mask"),
        ("R_SATURA", "saturation"),
        ("R_SUPERB", "superbias"),
        ("R_LINEAR", "linearity"),
    ):
        assert ours["header"][key] == refs[name].name
    # the synthetic data reach the branches they are meant to
    groupdq = pipe["groupdq"]
    assert (groupdq & rc.DQ["SATURATED"]).any() and (groupdq & rc.DQ["AD_FLOOR"]).any()
    assert (pipe["pixeldq"] & rc.DQ["NO_LIN_CORR"]).any() and (pipe["pixeldq"] & rc.DQ["NO_SAT_CHECK"]).any()
    cal = read_calibration(CalibrationPaths(**refs), detector="NRCA1")
    prepared = rc.prepare_calibration(
        mask_dq=cal.mask.dq,
        saturation=cal.saturation.threshold,
        saturation_dq=cal.saturation.dq,
        superbias=cal.superbias.bias,
        superbias_dq=cal.superbias.dq,
        coeffs=cal.linearity.coeffs,
        linearity_dq=cal.linearity.dq,
    )
    first = fits.getdata(raw, "SCI")[0, 0].astype(np.float32) - prepared.bias
    corr = rc.compute_refpix_correction(first, prepared.refpix_bad, rc.FrameGeometry.full_frame(-1, 2), float64=False)
    assert corr.float64_columns is not None, "group 0 should take the pipeline's zero-spread branch"


@needs_jwst
def test_niriss_grouped_two_integrations_equal_pipeline(tmp_path, crds_cache):
    """NIS (fast axis along DMS y), 4 frames per group, 2 integrations x 3 groups, ZEROFRAME.

    Group averaging switches on the saturation step's backward and group-2 checks (DQ only);
    the second integration runs the reference-pixel statistics in float64; the zero frames are
    linearized as a one-group ramp, as Mirage does for group-averaged readouts.
    """
    refs = J.write_reference_set(tmp_path / "refs", "NIS")
    ramp = J.make_ramp("NIS", ngroups=3, nints=2, seed=11)
    zero = np.clip(ramp[:, 0].astype(np.int32) - 40, 0, 65535).astype(np.uint16)
    raw = J.write_raw_dark(tmp_path / "nis_uncal.fits", "NIS", ramp=ramp, nframes=4, zeroframe=zero)
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    pipe_zero = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe_zero.npz", crds_cache, zeroframe=True)
    ours = _read_output(linearize_dark(raw, tmp_path / "lin.fits", include_dq=True, **refs))
    _compare(ours, pipe, "NIS NIS 2x3")
    zero_ours = {"sci": ours["zeroframe"][:, None], "sbandrefpix": ours["zerosbandrefpix"][:, None]}
    _compare(zero_ours, pipe_zero, "NIS ZEROFRAME as 1-group ramp")
    assert ours["header"]["ZEROSRC"] == "ZEROFRAME"
    # the group-averaging checks did flag something here
    backward = (pipe["groupdq"] & rc.DQ["DO_NOT_USE"]) & ~(pipe["groupdq"] & rc.DQ["SATURATED"])
    assert backward[:, 1, 1500, 1500].all()


@needs_jwst
def test_fgs_in_memory_equals_pipeline(tmp_path, crds_cache):
    """GUIDER1 through `linearize_ramp` (arrays), 2 threads and odd tile sizes."""
    from concurrent.futures import ThreadPoolExecutor

    refs = J.write_reference_set(tmp_path / "refs", "GUIDER1", ncoeffs=4)
    raw = J.write_raw_dark(tmp_path / "fgs_uncal.fits", "GUIDER1", ngroups=3, seed=5)
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    cal = read_calibration(CalibrationPaths(**refs), detector="GUIDER1")
    fast, slow = J.DETECTOR_AXES["GUIDER1"]
    with ThreadPoolExecutor(2) as pool:
        result = rc.linearize_ramp(
            fits.getdata(raw, "SCI"),
            fastaxis=fast,
            slowaxis=slow,
            tile_rows=100,
            executor=pool,
            **J.ramp_arrays(cal),
        )
    ours = {"sci": result.sci, "sbandrefpix": result.sbandrefpix, "pixeldq": result.pixeldq, "groupdq": result.groupdq}
    _compare(ours, pipe, "GUIDER1 FGSRAPID 1x3 (arrays)")


# ---------------------------------------------------------------------------------------------
# Golden case (no jwst needed)


def golden_inputs() -> dict:
    """A deterministic full-frame NRCB1 ramp (3 groups) and reference arrays, no RNG."""
    y, x = np.mgrid[0:2048, 0:2048]
    h = (x * 7919 + y * 104729 + (x * y) % 31) % 1009
    bias = (11000 + (h % 97) * 3 + (x // 512) * 40).astype(np.float32)
    ramp = np.empty((1, 3, 2048, 2048), np.uint16)
    for g in range(3):
        plane = bias + (h % 13) * (g + 1) + g * 5 + (y % 7) - (x % 2) * 3 + ((y // 64) % 5) * g
        plane = np.where(h == 1000, 30000 + 15000 * g, plane)  # saturates in group 2
        plane = np.where((h == 3) & (g == 2), 0, plane)
        ramp[0, g] = np.clip(np.rint(plane), 0, 65535).astype(np.uint16)
    mask = np.zeros((2048, 2048), np.uint32)
    mask[h == 500] |= rc.DQ["DO_NOT_USE"]
    mask[:4] |= rc.DQ["REFERENCE_PIXEL"]
    mask[-4:] |= rc.DQ["REFERENCE_PIXEL"]
    sat = (50000 + h * 5).astype(np.float32)
    sat_dq = np.zeros_like(mask)
    sat_dq[h == 77] |= rc.DQ["NO_SAT_CHECK"]
    sat[h == 78] = np.nan
    superbias = bias.copy()
    superbias[h == 900] = np.nan
    bias_dq = np.zeros_like(mask)
    coeffs = np.zeros((4, 2048, 2048), np.float32)
    coeffs[0] = 0.5
    coeffs[1] = 1 + (h % 11) * 1e-3
    coeffs[2] = 1e-6
    coeffs[3] = -2e-11
    coeffs[1][h == 555] = 0.0
    lin_dq = np.zeros_like(mask)
    lin_dq[h == 556] |= rc.DQ["NO_LIN_CORR"]
    return dict(
        raw=ramp,
        mask_dq=mask,
        saturation=sat,
        saturation_dq=sat_dq,
        superbias=superbias,
        superbias_dq=bias_dq,
        coeffs=coeffs,
        linearity_dq=lin_dq,
        fastaxis=1,
        slowaxis=-2,
    )


#: (group, y, x) sampled pixels: interior, reference rows and columns, saturated, zero, NaN-bias,
#: NO_LIN_CORR and zero-slope pixels.
GOLDEN_PIXELS = [
    (0, 1000, 1000),
    (1, 1000, 1000),
    (2, 1000, 1000),
    (2, 0, 0),
    (2, 2047, 2047),
    (1, 3, 700),
    (2, 2045, 1500),
    (0, 1024, 2),
    (2, 600, 2046),
    (2, 17, 1291),
    (1, 1500, 3),
    (1, 9, 100),
    (2, 9, 100),
    (2, 9, 1142),
    (2, 9, 780),
    (2, 9, 835),
    (2, 9, 1013),
    (2, 8, 833),
    (2, 9, 420),
    (2, 9, 515),
    (1, 9, 101),
]
#: From jwst 3.0.0 on `golden_inputs` (see test_golden_numbers_match_jwst).
GOLDEN_SCI = [
    3.4103591442108154,
    2.1694140434265137,
    1.3654439449310303,
    -23.134231567382812,
    9.81872844696045,
    -1.9773852825164795,
    -19.12560272216797,
    -4.507575988769531,
    0.3641778528690338,
    2.3068065643310547,
    -0.250103235244751,
    34596.40234375,
    48874.36328125,
    -11006.212890625,
    11302.5693359375,
    6.435262680053711,
    3.435262680053711,
    11.195144653320312,
    -5.162933826446533,
    -23.08774757385254,
    6.549447536468506,
]
GOLDEN_SB = [
    11113.107421875,
    11126.3408203125,
    11139.1396484375,
    11033.634765625,
    11386.681640625,
    11273.474609375,
    11196.5283203125,
    11145.0078125,
    11416.134765625,
    11148.2060546875,
    11176.7490234375,
    11113.02734375,
    11125.63671875,
    11124.630859375,
    35.833984375,
    11285.564453125,
    11282.564453125,
    11304.3046875,
    11080.634765625,
    11306.564453125,
    11260.0048828125,
]
#: sum of SCI, sum of SBANDREFPIX (float64), sum of GROUPDQ, sum of PIXELDQ
GOLDEN_SUMS = (527740255.4175376, 141054989341.33105, 357301, 35210491072567)


def _golden_result():
    gin = golden_inputs()
    raw = gin.pop("raw")
    return raw, rc.linearize_ramp(raw, **gin)


def _golden_summary(result) -> tuple:
    idx = tuple(np.array(GOLDEN_PIXELS).T)
    sci = result.sci[0][idx].astype(np.float64)
    sb = result.sbandrefpix[0][idx].astype(np.float64)
    sums = (
        float(result.sci.sum(dtype=np.float64)),
        float(result.sbandrefpix.sum(dtype=np.float64)),
        int(result.groupdq.sum(dtype=np.int64)),
        int(result.pixeldq.sum(dtype=np.int64)),
    )
    return sci, sb, sums


def test_golden_without_jwst():
    raw, result = _golden_result()
    sci, sb, sums = _golden_summary(result)
    np.testing.assert_allclose(sci, GOLDEN_SCI, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(sb, GOLDEN_SB, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(sums[:2], GOLDEN_SUMS[:2], rtol=1e-9)
    assert sums[2:] == GOLDEN_SUMS[2:]


@needs_jwst
def test_golden_numbers_match_jwst(tmp_path, crds_cache):
    """The golden numbers are what jwst computes from `golden_inputs` (and so are we)."""
    gin = golden_inputs()
    refs = {
        "mask": J.write_mask(tmp_path / "mask.fits", "NRCB1", gin["mask_dq"], None),
        "saturation": J.write_saturation(tmp_path / "sat.fits", "NRCB1", gin["saturation"], gin["saturation_dq"]),
        "superbias": J.write_superbias(tmp_path / "bias.fits", "NRCB1", gin["superbias"], gin["superbias_dq"]),
        "linearity": J.write_linearity(tmp_path / "lin.fits", "NRCB1", gin["coeffs"], gin["linearity_dq"]),
    }
    raw = J.write_raw_dark(tmp_path / "golden_uncal.fits", "NRCB1", ramp=gin["raw"])
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    _, result = _golden_result()
    ours = {"sci": result.sci, "sbandrefpix": result.sbandrefpix, "pixeldq": result.pixeldq, "groupdq": result.groupdq}
    _compare(ours, pipe, "golden NRCB1 1x3")
    sci, sb, sums = _golden_summary(rc.RampResult(pipe["sci"], pipe["sbandrefpix"], pipe["pixeldq"], pipe["groupdq"]))
    np.testing.assert_allclose(sci, GOLDEN_SCI, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(sb, GOLDEN_SB, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(sums[:2], GOLDEN_SUMS[:2], rtol=1e-9)
    assert sums[2:] == GOLDEN_SUMS[2:]


# ---------------------------------------------------------------------------------------------
# Input the raw file brings itself (issue 9)


@needs_jwst
def test_input_saturation_flags_spread_across_tiles_like_the_pipeline(tmp_path, crds_cache):
    """SATURATED flags in the raw file's GROUPDQ are grown to their neighbours by the pipeline,
    across the processing tiles' edges too: the issue's pixel (0, 0, 128, 1288), flags on the
    first and last rows of tiles, at the frame's edges; with 128-row and 7-row tiles."""
    refs = J.write_reference_set(tmp_path / "refs", "NRCA1")
    ramp = J.make_ramp("NRCA1", ngroups=3, nints=1, seed=31)
    gdq = np.zeros(ramp.shape, np.uint8)
    sat, dnu = rc.DQ["SATURATED"], rc.DQ["DO_NOT_USE"]
    for g, y, x in [(0, 128, 1288), (0, 127, 40), (1, 255, 700), (1, 256, 703), (2, 6, 300), (2, 7, 900)]:
        gdq[0, g, y, x] = sat
    gdq[0, 1, 2047, 2047] = gdq[0, 2, 0, 1024] = sat
    gdq[0, 0, 384, 5] = sat | dnu
    raw = J.write_raw_dark(tmp_path / "gdq_uncal.fits", "NRCA1", ramp=ramp, groupdq=gdq)
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    assert pipe["groupdq"][0, 0, 127, 1287:1290].tolist() == [sat] * 3  # the example
    for tile_rows in (128, 7):
        out = linearize_dark(raw, tmp_path / f"lin{tile_rows}.fits", include_dq=True, tile_rows=tile_rows, **refs)
        _compare(_read_output(out), pipe, f"NRCA1 input GROUPDQ, {tile_rows}-row tiles")


@needs_jwst
def test_float_raw_ramp_saved_by_the_pipeline_equals_pipeline(tmp_path, crds_cache):
    """A float32 ``*_uncal.fits`` as stdatamodels saves a RampModel (with fractional DN)."""
    refs = J.write_reference_set(tmp_path / "refs", "NRCB2")
    uint = J.write_raw_dark(tmp_path / "int_uncal.fits", "NRCB2", ngroups=3, seed=41)
    raw = J.save_as_ramp_model(uint, tmp_path / "float_uncal.fits", offset=0.375)
    with fits.open(raw) as h:
        assert h["SCI"].data.dtype == np.dtype(">f4") and "GROUPDQ" in h and "PIXELDQ" in h
    pipe = J.run_pipeline_subprocess(raw, refs, tmp_path / "pipe.npz", crds_cache)
    ours = _read_output(linearize_dark(raw, tmp_path / "lin.fits", include_dq=True, **refs))
    _compare(ours, pipe, "NRCB2 float32 SCI")
    assert ours["header"]["ZEROSRC"] == "GROUP0"
