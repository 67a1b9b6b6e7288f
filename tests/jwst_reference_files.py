"""Synthetic JWST raw darks and reference files for tests and benchmarks.

Writes real FITS files with astropy in the layouts the JWST pipeline reads: a level-1b raw ramp
(``SCI`` uint16, full frame) and the MASK, SATURATION, SUPERBIAS and LINEARITY reference files
(``DQ``/``DQ_DEF``, ``SCI``/``DQ``, ``SCI``/``DQ``, ``COEFFS``/``DQ``) as `stdatamodels` defines
them. The content is built to exercise every branch of the corrections: saturating pixels at the
edges and in clusters, zero (A/D floor) pixels, NO_SAT_CHECK and NaN thresholds, bad reference
pixels, NaN superbias values, NO_LIN_CORR / NaN / zero-slope linearity pixels and a DQ_DEF
table whose bit values differ from the standard ones.

Also used by ``benchmarks/bench_linearize.py`` (imported by path), so it depends on numpy and
astropy only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

N = 2048

#: FASTAXIS, SLOWAXIS of each detector (DMS orientation keywords of level-1b files).
DETECTOR_AXES = {
    "NRCA1": (-1, 2),
    "NRCA2": (1, -2),
    "NRCA3": (-1, 2),
    "NRCA4": (1, -2),
    "NRCALONG": (-1, 2),
    "NRCB1": (1, -2),
    "NRCB2": (-1, 2),
    "NRCB3": (1, -2),
    "NRCB4": (-1, 2),
    "NRCBLONG": (1, -2),
    "NIS": (-2, -1),
    "GUIDER1": (-2, 1),
    "GUIDER2": (2, -1),
}

_STANDARD = {
    "DO_NOT_USE": 1,
    "SATURATED": 2,
    "DEAD": 2**10,
    "HOT": 2**11,
    "UNRELIABLE_BIAS": 2**22,
    "NO_LIN_CORR": 2**20,
    "NO_SAT_CHECK": 2**21,
    "REFERENCE_PIXEL": 2**31,
}


def instrument_of(detector: str) -> str:
    """INSTRUME value for a CRDS-style detector name."""
    if detector.startswith("NRC"):
        return "NIRCAM"
    if detector == "NIS":
        return "NIRISS"
    return "FGS"


def _exp_type(detector: str) -> str:
    return {"NIRCAM": "NRC_DARK", "NIRISS": "NIS_DARK", "FGS": "FGS_DARK"}[instrument_of(detector)]


def _readpatt(detector: str, nframes: int) -> str:
    inst = instrument_of(detector)
    if nframes == 1:
        return {"NIRCAM": "RAPID", "NIRISS": "NISRAPID", "FGS": "FGSRAPID"}[inst]
    return {"NIRCAM": "MEDIUM8" if nframes == 8 else "SHALLOW4", "NIRISS": "NIS", "FGS": "FGS"}[inst]


def _common_keys(header: fits.Header, detector: str) -> None:
    header["TELESCOP"] = "JWST"
    header["INSTRUME"] = instrument_of(detector)
    header["DETECTOR"] = detector
    if detector.startswith("NRC"):
        header["CHANNEL"] = "LONG" if detector.endswith("LONG") else "SHORT"
        header["MODULE"] = detector[3]
    header["SUBARRAY"] = "FULL"
    header["SUBSTRT1"] = 1
    header["SUBSIZE1"] = N
    header["SUBSTRT2"] = 1
    header["SUBSIZE2"] = N
    fast, slow = DETECTOR_AXES[detector]
    header["FASTAXIS"] = fast
    header["SLOWAXIS"] = slow


def reference_pixel_mask() -> np.ndarray:
    """True on the 4-pixel reference border of a full frame."""
    ref = np.zeros((N, N), bool)
    ref[:4] = ref[-4:] = True
    ref[:, :4] = ref[:, -4:] = True
    return ref


# ---------------------------------------------------------------------------------------------
# Array content


def make_superbias(detector: str = "NRCA1", seed: int = 1) -> np.ndarray:
    """A float32 superbias (DN): 12000 +- amplifier offsets + pixel structure."""
    rng = np.random.default_rng(seed)
    bias = np.full((N, N), 12000.0, np.float32)
    amp = np.repeat(np.array([0.0, 150.0, -90.0, 60.0], np.float32), N // 4)
    bias += amp[None, :] if DETECTOR_AXES[detector][0] in (1, -1) else amp[:, None]
    bias += rng.normal(0, 40, (N, N)).astype(np.float32)
    return bias


def make_ramp(
    detector: str = "NRCA1",
    ngroups: int = 4,
    nints: int = 1,
    *,
    seed: int = 2,
    bias: np.ndarray | None = None,
    features: bool = True,
) -> np.ndarray:
    """A uint16 raw ramp (nints, ngroups, 2048, 2048) in DMS orientation.

    Bias + per-group amplifier/odd-even drifts (what the top/bottom reference pixels remove) +
    a row-correlated drift (what the side reference pixels remove) + dark current on the light
    sensitive pixels + read noise; with ``features``, pixels that saturate (singly, in a 3x3
    cluster, on the frame edges, only from group 3 on after a jump in group 2), zero-valued
    pixels and reference-pixel outliers.
    """
    rng = np.random.default_rng(seed)
    if bias is None:
        bias = make_superbias(detector)
    fast, slow = DETECTOR_AXES[detector]
    transposed = abs(fast) == 2
    ref = reference_pixel_mask()
    ramp = np.empty((nints, ngroups, N, N), np.uint16)
    dark = rng.gamma(2.0, 1.5, (N, N)).astype(np.float32)
    dark[ref] = 0.0
    for i in range(nints):
        for g in range(ngroups):
            plane = bias + dark * (g + 1) + rng.normal(0, 6, (N, N)).astype(np.float32)
            # amplifier and odd/even column drifts, along the detector's fast axis
            drift = np.empty(N, np.float32)
            for a in range(4):
                off = rng.normal(0, 25)
                drift[a * 512 : (a + 1) * 512 : 2] = off + rng.normal(0, 3)
                drift[a * 512 + 1 : (a + 1) * 512 : 2] = off + rng.normal(0, 3)
            rows = np.cumsum(rng.normal(0, 0.8, N)).astype(np.float32)
            if transposed:
                plane += drift[:, None] + rows[None, :]
            else:
                plane += drift[None, :] + rows[:, None]
            ramp[i, g] = np.clip(np.rint(plane), 0, 65535).astype(np.uint16)
    if features:
        _add_features(ramp, rng)
    return ramp


def _add_features(ramp: np.ndarray, rng: np.random.Generator) -> None:
    nints, ngroups = ramp.shape[:2]
    for i in range(nints):
        # hot pixels saturating at different groups (threshold ~ 52000-60000)
        pts = rng.integers(10, N - 10, (400, 2))
        start = rng.integers(0, ngroups, 400)
        for (y, x), s in zip(pts, start, strict=True):
            ramp[i, s:, y, x] = 65000
        # 3x3 cluster, edges, corners
        ramp[i, ngroups // 2 :, 1000:1003, 700:703] = 64000
        for y, x in ((0, 517), (2047, 33), (1200, 0), (640, 2047), (0, 0), (2047, 2047)):
            ramp[i, min(1, ngroups - 1) :, y, x] = 65535
        # zero (A/D floor) pixels in single groups
        z = rng.integers(0, N, (200, 2))
        zg = rng.integers(0, ngroups, 200)
        ramp[i, zg, z[:, 0], z[:, 1]] = 0
        # a pixel with a big jump in group 2 that saturates in group 3 (group-2 check)
        if ngroups > 2:
            ramp[i, 0, 1500, 1500] = 13000
            ramp[i, 1, 1500, 1500] = 50000
            ramp[i, 2:, 1500, 1500] = 65000
        # reference-pixel outliers (sigma clipping) and a constant-valued strip
        ramp[i, :, 1, 40:400:7] = 30000
        ramp[i, :, 2046, 1600:1700:3] = 1
        ramp[i, :, 0:4, 1024:1536:2] = 12345
    return None


def make_mask_dq() -> tuple[np.ndarray, np.ndarray]:
    """A MASK ``DQ`` array and its ``DQ_DEF`` table with non-standard bit values.

    File bits: 1 DO_NOT_USE, 2 DEAD, 4 HOT, 8 REFERENCE_PIXEL, 16 (undefined: dropped on load).
    Bad reference pixels are DO_NOT_USE: a whole top odd-column run of amplifier A, side
    reference pixels of a 30-row band (all 8), and scattered ones.
    """
    rng = np.random.default_rng(3)
    dq = np.zeros((N, N), np.uint32)
    ref = reference_pixel_mask()
    dq[ref] |= 8
    bad = rng.integers(0, N, (3000, 2))
    dq[bad[:, 0], bad[:, 1]] |= 1 | 2
    hot = rng.integers(0, N, (3000, 2))
    dq[hot[:, 0], hot[:, 1]] |= 4
    undefined = rng.integers(0, N, (500, 2))
    dq[undefined[:, 0], undefined[:, 1]] |= 16
    # bad reference pixels (in DMS orientation; orientation differs per detector, which is fine)
    dq[2044:2048, 0:512:2] |= 1
    dq[700:730, 0:4] |= 1
    dq[700:730, 2044:2048] |= 1
    dq[0:4, 1536:2048] |= 1  # bottom of the last amplifier/side entirely bad
    side = rng.integers(4, N - 4, 300)
    dq[side, rng.integers(0, 4, 300)] |= 1
    dq_def = np.array(
        [
            (0, 1, "DO_NOT_USE", "Bad pixel, do not use"),
            (1, 2, "DEAD", "Dead pixel"),
            (2, 4, "HOT", "Hot pixel"),
            (3, 8, "REFERENCE_PIXEL", "Reference pixel"),
        ],
        dtype=[("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")],
    )
    return dq, dq_def


def make_saturation(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Saturation thresholds (DN, float32) and DQ with NO_SAT_CHECK and NaN pixels."""
    rng = np.random.default_rng(seed)
    sat = rng.uniform(52000, 60000, (N, N)).astype(np.float32)
    dq = np.zeros((N, N), np.uint32)
    pts = rng.integers(0, N, (300, 2))
    dq[pts[:, 0], pts[:, 1]] |= _STANDARD["NO_SAT_CHECK"]
    sat[pts[:100, 0], pts[:100, 1]] = 0.0  # must not flag these even though 0 < data
    nan = rng.integers(0, N, (300, 2))
    sat[nan[:, 0], nan[:, 1]] = np.nan
    dq[1000:1003, 700] |= _STANDARD["DO_NOT_USE"]
    return sat, dq


def make_superbias_dq(bias: np.ndarray, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Superbias with NaN pixels and a DQ with UNRELIABLE_BIAS / DO_NOT_USE pixels."""
    rng = np.random.default_rng(seed)
    bias = bias.copy()
    # constant in a strip of reference pixels whose raw values are constant too (see
    # _add_features): zero spread after bias subtraction, the pipeline's float64-mean branch
    bias[0:4, 1024:1536:2] = 12000.0
    nan = rng.integers(8, N - 8, (200, 2))
    bias[nan[:, 0], nan[:, 1]] = np.nan
    bias[1, 5] = np.nan  # in a reference row
    dq = np.zeros((N, N), np.uint32)
    pts = rng.integers(0, N, (500, 2))
    dq[pts[:, 0], pts[:, 1]] |= _STANDARD["UNRELIABLE_BIAS"]
    dq[pts[:50, 0], pts[:50, 1]] |= _STANDARD["DO_NOT_USE"]
    return bias, dq


def make_linearity(ncoeffs: int = 5, seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Linearity coefficients (ncoeffs, 2048, 2048) float32 and DQ.

    Includes NO_LIN_CORR flagged pixels, NaN coefficients and zero linear terms.
    """
    rng = np.random.default_rng(seed)
    coeffs = np.zeros((ncoeffs, N, N), np.float32)
    coeffs[0] = rng.normal(0, 2, (N, N))
    coeffs[1] = rng.normal(1.0, 0.01, (N, N))
    scales = [2e-6, 3e-11, -1e-16, 1e-21, 0.0, 0.0]
    for k in range(2, ncoeffs):
        coeffs[k] = rng.normal(scales[k - 2], abs(scales[k - 2]) * 0.1 + 1e-30, (N, N))
    dq = np.zeros((N, N), np.uint32)
    pts = rng.integers(0, N, (300, 3))
    dq[pts[:100, 0], pts[:100, 1]] |= _STANDARD["NO_LIN_CORR"] | _STANDARD["DO_NOT_USE"]
    coeffs[pts[100:200, 2] % ncoeffs, pts[100:200, 0], pts[100:200, 1]] = np.nan
    coeffs[1, pts[200:, 0], pts[200:, 1]] = 0.0
    return coeffs, dq


# ---------------------------------------------------------------------------------------------
# Files


def _dq_def_hdu(dq_def: np.ndarray | None) -> list[fits.BinTableHDU]:
    if dq_def is None:
        return []
    return [fits.BinTableHDU(dq_def, name="DQ_DEF")]


def _reference_primary(detector: str, reftype: str, datamodel: str) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    h = hdu.header
    _common_keys(h, detector)
    h["REFTYPE"] = reftype
    h["DATAMODL"] = datamodel
    h["EXP_TYPE"] = "ANY"
    h["READPATT"] = "ANY"
    h["USEAFTER"] = "2015-01-01T00:00:00"
    h["PEDIGREE"] = "DUMMY"
    h["AUTHOR"] = "mirage-data tests"
    h["DESCRIP"] = f"Synthetic {reftype} reference file for tests"
    return hdu


def write_mask(path: str | os.PathLike, detector: str, dq=None, dq_def=None) -> Path:
    """Write a MASK reference file (``DQ``, ``DQ_DEF``)."""
    if dq is None:
        dq, dq_def = make_mask_dq()
    hdus = [_reference_primary(detector, "MASK", "MaskModel"), fits.ImageHDU(dq.astype(np.uint32), name="DQ")]
    fits.HDUList(hdus + _dq_def_hdu(dq_def)).writeto(path, overwrite=True)
    return Path(path)


def _standard_dq_def(names: list[str]) -> np.ndarray:
    return np.array(
        [(int(np.log2(_STANDARD[n])), _STANDARD[n], n, n.lower()) for n in names],
        dtype=[("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")],
    )


def write_saturation(path, detector: str, sat=None, dq=None) -> Path:
    """Write a SATURATION reference file (``SCI``, ``DQ``, ``DQ_DEF``)."""
    if sat is None:
        sat, dq = make_saturation()
    hdus = [
        _reference_primary(detector, "SATURATION", "SaturationModel"),
        fits.ImageHDU(sat.astype(np.float32), name="SCI"),
        fits.ImageHDU(dq.astype(np.uint32), name="DQ"),
    ]
    hdus += _dq_def_hdu(_standard_dq_def(["DO_NOT_USE", "NO_SAT_CHECK"]))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def write_superbias(path, detector: str, bias=None, dq=None) -> Path:
    """Write a SUPERBIAS reference file (``SCI``, ``ERR``, ``DQ``, ``DQ_DEF``)."""
    if bias is None:
        bias, dq = make_superbias_dq(make_superbias(detector))
    hdus = [
        _reference_primary(detector, "SUPERBIAS", "SuperBiasModel"),
        fits.ImageHDU(bias.astype(np.float32), name="SCI"),
        fits.ImageHDU(np.ones_like(bias, dtype=np.float32), name="ERR"),
        fits.ImageHDU(dq.astype(np.uint32), name="DQ"),
    ]
    hdus += _dq_def_hdu(_standard_dq_def(["DO_NOT_USE", "UNRELIABLE_BIAS"]))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def write_linearity(path, detector: str, coeffs=None, dq=None) -> Path:
    """Write a LINEARITY reference file (``COEFFS``, ``DQ``, ``DQ_DEF``)."""
    if coeffs is None:
        coeffs, dq = make_linearity()
    hdus = [
        _reference_primary(detector, "LINEARITY", "LinearityModel"),
        fits.ImageHDU(coeffs.astype(np.float32), name="COEFFS"),
        fits.ImageHDU(dq.astype(np.uint32), name="DQ"),
    ]
    hdus += _dq_def_hdu(_standard_dq_def(["DO_NOT_USE", "NO_LIN_CORR"]))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def write_raw_dark(
    path,
    detector: str = "NRCA1",
    *,
    ramp: np.ndarray | None = None,
    ngroups: int = 4,
    nints: int = 1,
    nframes: int = 1,
    zeroframe: np.ndarray | None = None,
    seed: int = 2,
    bias: np.ndarray | None = None,
    extra_header: dict | None = None,
    groupdq: np.ndarray | None = None,
) -> Path:
    """Write a level-1b raw dark: primary header + ``SCI`` (+ optional ``ZEROFRAME``, ``GROUPDQ``).

    ``SCI`` is uint16, or float32 when *ramp* is float32 (as a saved ``RampModel`` has it).
    """
    if ramp is None:
        ramp = make_ramp(detector, ngroups, nints, seed=seed, bias=bias)
    nints, ngroups = ramp.shape[:2]
    primary = fits.PrimaryHDU()
    h = primary.header
    _common_keys(h, detector)
    h["DATAMODL"] = "Level1bModel"
    h["EXP_TYPE"] = _exp_type(detector)
    h["READPATT"] = _readpatt(detector, nframes)
    h["NINTS"] = nints
    h["NGROUPS"] = ngroups
    h["NFRAMES"] = nframes
    h["NSKIP"] = 0
    h["GROUPGAP"] = 0
    h["TFRAME"] = 10.73677
    h["TGROUP"] = 10.73677 * nframes
    h["NOUTPUTS"] = 4
    h["DATE-OBS"] = "2016-01-09"
    h["TIME-OBS"] = "00:03:58.000"
    h["ZEROFRAM"] = zeroframe is not None
    for key, value in (extra_header or {}).items():
        h[key] = value
    sci_type = np.float32 if ramp.dtype == np.float32 else np.uint16
    hdus = [primary, fits.ImageHDU(ramp.astype(sci_type), name="SCI")]
    if groupdq is not None:
        hdus.append(fits.ImageHDU(groupdq.astype(np.uint8), name="GROUPDQ"))
    if zeroframe is not None:
        hdus.append(fits.ImageHDU(zeroframe.astype(sci_type), name="ZEROFRAME"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def save_as_ramp_model(raw_path, out_path, offset: float = 0.0) -> Path:
    """Open a raw dark as the pipeline does (``RampModel``), add *offset* DN to SCI (float32)
    and save it with stdatamodels: a float32 ``*_uncal.fits`` as the pipeline writes one."""
    from stdatamodels.jwst import datamodels

    with datamodels.RampModel(str(raw_path)) as model:
        model.data = model.data.astype(np.float32) + np.float32(offset)
        model.save(str(out_path))
    return Path(out_path)


def write_reference_set(folder: str | os.PathLike, detector: str, *, ncoeffs: int = 5) -> dict[str, Path]:
    """Write all four reference files for *detector* into *folder*; return {reftype: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = detector.lower()
    bias, bias_dq = make_superbias_dq(make_superbias(detector))
    coeffs, lin_dq = make_linearity(ncoeffs)
    return {
        "mask": write_mask(folder / f"jwst_{tag}_mask_test.fits", detector),
        "saturation": write_saturation(folder / f"jwst_{tag}_saturation_test.fits", detector),
        "superbias": write_superbias(folder / f"jwst_{tag}_superbias_test.fits", detector, bias, bias_dq),
        "linearity": write_linearity(folder / f"jwst_{tag}_linearity_test.fits", detector, coeffs, lin_dq),
    }


def write_crds_server_config(cache_dir: str | os.PathLike, context: str) -> Path:
    """Write the ``config/jwst/server_config`` a CRDS client keeps from its last server contact,
    naming *context* as operational, so the client can answer from the cache without a server.
    Returns the config folder."""
    config = Path(cache_dir) / "config" / "jwst"
    config.mkdir(parents=True, exist_ok=True)
    info = {
        "observatory": "jwst",
        "operational_context": context,
        "edit_context": context,
        "latest_context": context,
        "bad_files": "",
        "bad_files_list": [],
        "force_remote_mode": False,
        "crds_version": {"str": "0.0.0"},
        "reference_url": "none",
        "mapping_url": "none",
        "last_synced": "never (written by a test)",
    }
    (config / "server_config").write_text(repr(info))
    return config


def ramp_arrays(calibration) -> dict:
    """The reference arrays of a `mirage_data.calibration.reference_files.Calibration`, as
    keyword arguments of `mirage_data.ramp.linearize_ramp`."""
    return dict(
        mask_dq=calibration.mask.dq,
        saturation=calibration.saturation.threshold,
        saturation_dq=calibration.saturation.dq,
        superbias=calibration.superbias.bias,
        superbias_dq=calibration.superbias.dq,
        coeffs=calibration.linearity.coeffs,
        linearity_dq=calibration.linearity.dq,
    )


def offline_crds_environment(cache_dir: str | os.PathLike) -> dict[str, str]:
    """Environment variables under which the jwst steps never contact a CRDS server.

    Step parameter look-ups are disabled (``STPIPE_DISABLE_CRDS_STEPPARS``), every reference
    file is given as an override, and the "context used" that each step records at the end is
    read from a minimal local CRDS cache (a ``server_config`` file) written into *cache_dir*;
    the server URL names "serverless" mode, in which the CRDS client refuses network calls.
    """
    cache_dir = Path(cache_dir)
    write_crds_server_config(cache_dir, "jwst_0000.pmap")
    return {
        "CRDS_PATH": str(cache_dir),
        "CRDS_SERVER_URL": "https://jwst-serverless-mode.stsci.edu",
        "CRDS_CONTEXT": "jwst_0000.pmap",
        "CRDS_MODE": "local",
        "STPIPE_DISABLE_CRDS_STEPPARS": "True",
    }


# ---------------------------------------------------------------------------------------------
# The JWST pipeline as the yardstick (imported lazily: jwst is a test dependency)


def run_jwst_steps(raw_path, refs: dict, *, zeroframe: bool = False) -> dict[str, np.ndarray]:
    """Run jwst's DQInit, Saturation, SuperBias, RefPix and Linearity steps as Mirage does.

    Call with the environment of `offline_crds_environment` set. Returns ``sci`` (linearized),
    ``sbandrefpix`` (raw minus the refpix output), ``pixeldq`` and ``groupdq``. With
    *zeroframe*, the raw file's ZEROFRAME is run as a one-group ramp (Mirage's treatment of
    zero frames of group-averaged readouts).
    """
    import logging

    from jwst.dq_init import DQInitStep
    from jwst.linearity import LinearityStep
    from jwst.refpix import RefPixStep
    from jwst.saturation import SaturationStep
    from jwst.superbias import SuperBiasStep
    from stdatamodels.jwst import datamodels

    logging.getLogger("stpipe").setLevel(logging.WARNING)
    logging.getLogger("jwst").setLevel(logging.WARNING)
    logging.getLogger("stcal").setLevel(logging.WARNING)
    model = datamodels.RampModel(str(raw_path))
    if zeroframe:
        zero = fits.getdata(raw_path, "ZEROFRAME").astype(np.float32)
        model.data = zero[:, None]
        model.groupdq = np.zeros(model.data.shape, np.uint8)
        model.meta.exposure.ngroups = 1
        model.meta.exposure.zero_frame = False
    raw = model.data.copy()
    model = DQInitStep.call(model, override_mask=str(refs["mask"]))
    model = SaturationStep.call(
        model, override_saturation=str(refs["saturation"]), override_superbias=str(refs["superbias"])
    )
    model = SuperBiasStep.call(model, override_superbias=str(refs["superbias"]))
    model = RefPixStep.call(model)
    sb = raw - model.data
    model = LinearityStep.call(model, override_linearity=str(refs["linearity"]))
    return {"sci": model.data, "sbandrefpix": sb, "pixeldq": model.pixeldq, "groupdq": model.groupdq}


def pipeline_to_npz(raw_path, refs: dict, out_path, cache_dir, zeroframe: bool = False) -> None:
    """`run_jwst_steps` fully offline (sets the CRDS environment), results saved to .npz."""
    os.environ.update(offline_crds_environment(cache_dir))
    np.savez(out_path, **run_jwst_steps(raw_path, refs, zeroframe=zeroframe))


def run_pipeline_subprocess(raw_path, refs: dict, out_path, cache_dir, zeroframe: bool = False, timeout=600) -> dict:
    """Run `pipeline_to_npz` in a fresh Python (isolated CRDS state) and load its results."""
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import jwst_reference_files as J; "
        f"J.pipeline_to_npz({str(raw_path)!r}, { ({k: str(v) for k, v in refs.items()})!r}, "
        f"{str(out_path)!r}, {str(cache_dir)!r}, zeroframe={zeroframe!r})"
    )
    env = dict(os.environ, **offline_crds_environment(cache_dir))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"jwst pipeline run failed:\n{done.stderr[-4000:]}")
    with np.load(out_path) as f:
        return {k: f[k] for k in f.files}
