"""File level: mirage_data.darks.linearize, mirage_data.calibration.reference_files and the CLI.

Real FITS files written with astropy; the numbers themselves are checked against the JWST
pipeline in test_pipeline_equivalence.py, here against the in-memory chain. (Over 600 lines:
one file for everything a user of ``linearize`` meets, sharing its module-scoped fixtures, which
are costly to build: full-frame reference files and raw darks.)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

import jwst_reference_files as J
from mirage_data.calibration.reference_files import (
    CalibrationDirectory,
    CalibrationError,
    CalibrationPaths,
    crds_parameters,
    read_calibration,
    read_mask,
    resolve_calibration,
)
from mirage_data.collection.catalog import linearized_name, load_catalog
from mirage_data.darks.batch import default_output_name, find_raw_darks, linearize_all
from mirage_data.darks.linearize import DarkFormatError, linearize_dark
from mirage_data.install.inventory import MADE, Inventory
from mirage_data.install.upkeep import installed_status, verify_install
from mirage_data.ramp import linearize_ramp
from mirage_data.ramp.dqflags import DQ

NRC_RAW = "NRCNRCA1-DARK-60082202011_1_481_SE_2016-01-09T00h03m58_level1b_uncal.fits"
FGS_RAW = "FGSFGS-DARK-60090604481_1_497_SE_2016-01-09T06h00m42_dms_uncal.fits"


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Reference files for NRCA1 and GUIDER1 in one folder: {detector: {reftype: path}}."""
    folder = tmp_path_factory.mktemp("calibration")
    return {det: J.write_reference_set(folder, det, ncoeffs=4) for det in ("NRCA1", "GUIDER1")}


@pytest.fixture(scope="module")
def raw_nrc(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / NRC_RAW
    return J.write_raw_dark(path, "NRCA1", ngroups=3, nints=1, seed=21)


def _no_partial_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part")]


def _reference_result(raw_path, refs):
    cal = read_calibration(CalibrationPaths(**refs))
    h = fits.getheader(raw_path)
    return linearize_ramp(
        fits.getdata(raw_path, "SCI"),
        fastaxis=h["FASTAXIS"],
        slowaxis=h["SLOWAXIS"],
        nframes=h["NFRAMES"],
        **J.ramp_arrays(cal),
    )


# ---------------------------------------------------------------------------------------------
# linearize_dark


def test_output_file_layout_and_values(tmp_path, raw_nrc, refs):
    seen = []
    out = linearize_dark(
        raw_nrc, tmp_path / "lin.fits", include_dq=True, progress=lambda d, t: seen.append((d, t)), **refs["NRCA1"]
    )
    expected = _reference_result(raw_nrc, refs["NRCA1"])
    with fits.open(out) as h:
        h.verify("exception")
        names = [x.name for x in h]
        assert names == ["PRIMARY", "SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX", "PIXELDQ", "GROUPDQ"]
        assert h["SCI"].data.dtype == np.dtype(">f4") and h["SCI"].data.shape == (1, 3, 2048, 2048)
        assert h["ZEROFRAME"].data.shape == (1, 2048, 2048)
        np.testing.assert_array_equal(h["SCI"].data, expected.sci)
        np.testing.assert_array_equal(h["SBANDREFPIX"].data, expected.sbandrefpix)
        np.testing.assert_array_equal(h["ZEROFRAME"].data, expected.sci[:, 0])
        np.testing.assert_array_equal(h["ZEROSBANDREFPIX"].data, expected.sbandrefpix[:, 0])
        np.testing.assert_array_equal(h["PIXELDQ"].data, expected.pixeldq)
        np.testing.assert_array_equal(h["GROUPDQ"].data, expected.groupdq)
        p = h[0].header
        for key, value in dict(
            READPATT="RAPID",
            NINTS=1,
            NGROUPS=3,
            NFRAMES=1,
            NSKIP=0,
            DETECTOR="NRCA1",
            INSTRUME="NIRCAM",
            FASTAXIS=-1,
            SLOWAXIS=2,
        ).items():
            assert p[key] == value, key
        assert p["R_MASK"] == refs["NRCA1"]["mask"].name and p["R_LINEAR"] == refs["NRCA1"]["linearity"].name
        assert p["R_SATURA"] == refs["NRCA1"]["saturation"].name and p["R_SUPERB"] == refs["NRCA1"]["superbias"].name
        assert p["DATE-OBS"] == "2016-01-09"  # the raw header travels along
        assert h["SCI"].header["BUNIT"] == "DN"
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert _no_partial_files(tmp_path) == []


def test_default_output_has_no_dq_and_single_thread_is_identical(tmp_path, raw_nrc, refs):
    a = linearize_dark(raw_nrc, tmp_path / "a.fits", threads=1, tile_rows=2048, **refs["NRCA1"])
    b = linearize_dark(raw_nrc, tmp_path / "b.fits", threads=2, tile_rows=100, **refs["NRCA1"])
    with fits.open(a) as ha, fits.open(b) as hb:
        assert [x.name for x in ha] == ["PRIMARY", "SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"]
        for ext in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"):
            np.testing.assert_array_equal(ha[ext].data, hb[ext].data)


def test_existing_output_is_kept_unless_overwrite(tmp_path, raw_nrc, refs):
    target = tmp_path / "lin.fits"
    target.write_text("keep me")
    with pytest.raises(FileExistsError):
        linearize_dark(raw_nrc, target, **refs["NRCA1"])
    assert target.read_text() == "keep me"
    linearize_dark(raw_nrc, target, overwrite=True, **refs["NRCA1"])
    assert fits.getheader(target)["DETECTOR"] == "NRCA1"


def test_error_midway_leaves_nothing(tmp_path, raw_nrc, refs):
    def stop(done, total):
        if done == 2:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        linearize_dark(raw_nrc, tmp_path / "lin.fits", progress=stop, **refs["NRCA1"])
    assert list(tmp_path.iterdir()) == []


def _write_sci(path, data, header=None, extname="SCI", extra=()):
    primary = fits.PrimaryHDU()
    base = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "FASTAXIS": -1, "SLOWAXIS": 2, "NFRAMES": 1, "READPATT": "RAPID"}
    primary.header.update(base if header is None else header)
    fits.HDUList([primary, fits.ImageHDU(data, name=extname), *extra]).writeto(path)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("float64", "unsigned 16-bit counts (BITPIX = 16, BZERO = 32768) or float32"),
        ("subarray", "subarray ramp"),
        ("three_d", "4-D"),
        ("no_sci", "no SCI extension"),
        ("detector", "not a NIRCAM detector"),
        ("axes", "FASTAXIS"),
        ("gzip", "gzip-compressed"),
        ("truncated", "truncated"),
        ("zeroframe", "ZEROFRAME"),
    ],
)
def test_bad_raw_darks_are_clear_errors_and_leave_no_output(tmp_path, raw_nrc, refs, case, message):
    src = tmp_path / "in"
    src.mkdir()
    bad = src / "bad_uncal.fits"
    if case == "float64":
        _write_sci(bad, np.zeros((1, 1, 2048, 2048), np.float64))
    elif case == "subarray":
        _write_sci(
            bad,
            np.zeros((1, 2, 64, 64), np.uint16),
            header={"SUBARRAY": "SUB64P", "INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "FASTAXIS": -1, "SLOWAXIS": 2},
        )
    elif case == "three_d":
        _write_sci(bad, np.zeros((2, 2048, 2048), np.uint16))
    elif case == "no_sci":
        _write_sci(bad, np.zeros((1, 1, 8, 8), np.uint16), extname="DATA")
    elif case == "detector":
        _write_sci(
            bad,
            np.zeros((1, 1, 2048, 2048), np.uint16),
            header={"INSTRUME": "NIRCAM", "DETECTOR": "NIS", "FASTAXIS": -1, "SLOWAXIS": 2},
        )
    elif case == "axes":
        _write_sci(
            bad,
            np.zeros((1, 1, 2048, 2048), np.uint16),
            header={"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "FASTAXIS": 1, "SLOWAXIS": 1},
        )
    elif case == "gzip":
        with open(raw_nrc, "rb") as f, gzip.open(bad, "wb") as g:
            shutil.copyfileobj(f, g)
    elif case == "truncated":
        data = raw_nrc.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "zeroframe":
        _write_sci(
            bad,
            np.zeros((1, 1, 2048, 2048), np.uint16),
            extra=[fits.ImageHDU(np.zeros((1, 64, 64), np.uint16), name="ZEROFRAME")],
        )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises((DarkFormatError, ValueError)) as info:
        linearize_dark(bad, out_dir / "lin.fits", **refs["NRCA1"])
    assert message in str(info.value)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("cut", ["inside ZEROFRAME", "last block", "inside a header"])
def test_truncation_anywhere_is_refused_before_writing(tmp_path, refs, cut):
    """A raw dark cut anywhere is refused, from its headers' sizes, before anything is written
    (stdatamodels refuses these files too)."""
    ramp = np.full((1, 2, 2048, 2048), 12000, np.uint16)
    whole = J.write_raw_dark(tmp_path / "whole_uncal.fits", "NRCA1", ramp=ramp, nframes=2, zeroframe=ramp[:, 0])
    data = whole.read_bytes()
    with fits.open(whole) as h:
        zero_at = h.fileinfo(2)["datLoc"]
        assert h[2].name == "ZEROFRAME" and len(data) == zero_at + 2048 * 2048 * 2 + (-(2048 * 2048 * 2) % 2880)
    size = {
        "inside ZEROFRAME": zero_at + 1000 * 2048 * 2,
        "last block": len(data) - 2880,
        "inside a header": zero_at - 1000,
    }[cut]
    bad = tmp_path / "in" / "cut_uncal.fits"
    bad.parent.mkdir()
    bad.write_bytes(data[:size])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DarkFormatError, match="truncated") as info:
        linearize_dark(bad, out_dir / "lin.fits", **refs["NRCA1"])
    assert "cut_uncal.fits" in str(info.value)
    assert list(out_dir.iterdir()) == []
    # the command line says so in one line, exit status 2
    from mirage_data.cli import main

    r = refs["NRCA1"]
    args = ["linearize", str(bad), "-o", str(out_dir / "lin.fits")]
    for key in ("mask", "saturation", "superbias", "linearity"):
        args += [f"--{key}", str(r[key])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "truncated" in result.output and "Traceback" not in result.output
    assert list(out_dir.iterdir()) == []


def test_group_averaged_with_inverse_linearity_is_refused(tmp_path, refs):
    raw = J.write_raw_dark(
        tmp_path / "nrc_uncal.fits", "NRCA1", ramp=np.full((1, 1, 2048, 2048), 12000, np.uint16), nframes=2
    )
    lin = tmp_path / "lin_inv.fits"
    with fits.open(refs["NRCA1"]["linearity"]) as h:
        h.append(fits.ImageHDU(h["COEFFS"].data, name="INV_COEFFS"))
        h.writeto(lin)
    given = dict(refs["NRCA1"], linearity=lin)
    with pytest.raises(CalibrationError, match="read-level linearity"):
        linearize_dark(raw, tmp_path / "out.fits", **given)
    assert not (tmp_path / "out.fits").exists()


# ---------------------------------------------------------------------------------------------
# Reference files


def _small_reference(path, reftype, detector="NRCA1", shape=(2048, 2048), ext=None, instrument="NIRCAM"):
    primary = fits.PrimaryHDU()
    primary.header.update({"REFTYPE": reftype, "DETECTOR": detector, "INSTRUME": instrument})
    data = np.zeros(shape, np.float32 if ext != "DQ" else np.uint32)
    fits.HDUList([primary, fits.ImageHDU(data, name=ext or "DQ")]).writeto(path)
    return path


@pytest.mark.parametrize(
    "which, make, message",
    [
        ("mask", lambda p: _small_reference(p, "MASK", detector="NRCB1", shape=(8, 8)), "for detector NRCB1"),
        ("mask", lambda p: _small_reference(p, "MASK", shape=(1024, 1024)), "shape (1024, 1024)"),
        ("saturation", lambda p: _small_reference(p, "SUPERBIAS", ext="SCI", shape=(8, 8)), "is a SUPERBIAS reference"),
        ("linearity", lambda p: _small_reference(p, "LINEARITY", ext="DQ", shape=(8, 8)), "no COEFFS extension"),
        ("linearity", lambda p: _small_reference(p, "LINEARITY", ext="COEFFS", shape=(1, 2048, 2048)), "ncoeffs >= 2"),
        (
            "superbias",
            lambda p: _small_reference(p, "SUPERBIAS", ext="SCI", instrument="NIRISS", shape=(8, 8)),
            "instrument NIRISS",
        ),
        ("superbias", lambda p: p.write_text("not fits"), "cannot be read"),
    ],
)
def test_bad_reference_files_are_clear_errors(tmp_path, raw_nrc, refs, which, make, message):
    bad = tmp_path / "bad_ref.fits"
    make(bad)
    given = dict(refs["NRCA1"], **{which: bad})
    with pytest.raises(CalibrationError) as info:
        linearize_dark(raw_nrc, tmp_path / "lin.fits", **given)
    assert message in str(info.value) and which.upper() in str(info.value)
    assert not (tmp_path / "lin.fits").exists() and _no_partial_files(tmp_path) == []


def test_mask_dq_def_is_applied_as_stdatamodels_does(refs):
    mask = read_mask(refs["NRCA1"]["mask"], detector="NRCA1")
    raw_dq = fits.getdata(refs["NRCA1"]["mask"], "DQ")
    # file bits 1 DO_NOT_USE, 2 DEAD, 4 HOT, 8 REFERENCE_PIXEL, 16 undefined
    assert ((raw_dq & 8) != 0).sum() == ((mask.dq & DQ["REFERENCE_PIXEL"]) != 0).sum() > 0
    assert ((raw_dq & 4) != 0).sum() == ((mask.dq & DQ["HOT"]) != 0).sum() > 0
    assert not (mask.dq & 16).any() and (raw_dq & 16).any()
    from stdatamodels.jwst import datamodels  # a test dependency (jwst): its absence fails

    with datamodels.MaskModel(str(refs["NRCA1"]["mask"])) as model:
        np.testing.assert_array_equal(mask.dq, model.dq)


def test_calibration_directory_matches_by_detector_and_date(tmp_path, refs):
    folder = tmp_path / "cal"
    folder.mkdir()
    for det in refs:
        for p in refs[det].values():
            shutil.copy(p, folder / p.name)
    # a newer mask for NRCA1 that is not yet valid for a 2016 dark, and one that is
    newer = folder / "jwst_nrca1_mask_2017.fits"
    shutil.copy(refs["NRCA1"]["mask"], newer)
    with fits.open(newer, mode="update") as h:
        h[0].header["USEAFTER"] = "2017-06-01T00:00:00"
    valid = folder / "jwst_nrca1_mask_2015b.fits"
    shutil.copy(refs["NRCA1"]["mask"], valid)
    with fits.open(valid, mode="update") as h:
        h[0].header["USEAFTER"] = "2015-06-01T00:00:00"
    (folder / "notes.fits").write_text("not a fits file")
    directory = CalibrationDirectory(folder)
    header = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "DATE-OBS": "2016-01-09"}
    paths = directory.resolve(header)
    assert paths.mask == valid
    assert paths.linearity.name == refs["NRCA1"]["linearity"].name
    assert directory.select("mask", instrument="NIRCAM", detector="NRCA1", date="2018-01-01") == newer
    fgs = directory.resolve({"INSTRUME": "FGS", "DETECTOR": "GUIDER1", "DATE-OBS": "2016-01-09"})
    assert fgs.superbias.name == refs["GUIDER1"]["superbias"].name
    with pytest.raises(CalibrationError, match="no MASK reference file for NIRISS NIS"):
        directory.resolve({"INSTRUME": "NIRISS", "DETECTOR": "NIS"})
    mixed = resolve_calibration(header, mask=refs["NRCA1"]["mask"], calibration_dir=directory, use_crds=False)
    assert mixed.mask == refs["NRCA1"]["mask"] and mixed.saturation.parent == folder
    with pytest.raises(CalibrationError, match="no SATURATION, SUPERBIAS, LINEARITY reference file given"):
        resolve_calibration(header, mask=refs["NRCA1"]["mask"], use_crds=False)


def test_crds_parameters_come_from_the_raw_header():
    """The selection parameters handed to CRDS (the look-ups themselves run the real crds client
    against a local CRDS cache in test_crds_lookup.py; nothing here stands in for it)."""
    header = {
        "INSTRUME": "NIRCAM",
        "DETECTOR": "NRCA1",
        "READPATT": "RAPID",
        "SUBARRAY": "FULL",
        "EXP_TYPE": "NRC_DARK",
        "DATE-OBS": "2016-01-09",
        "NGROUPS": 108,
    }
    params = crds_parameters(header)
    assert params["meta.instrument.detector"] == "NRCA1" and params["meta.instrument.name"] == "NIRCAM"
    assert params["meta.exposure.readpatt"] == "RAPID" and params["meta.exposure.type"] == "NRC_DARK"
    assert params["meta.observation.date"] == "2016-01-09" and params["meta.observation.time"] == "00:00:00"
    assert params["meta.exposure.ngroups"] == "108" and params["meta.telescope"] == "JWST"


# ---------------------------------------------------------------------------------------------
# linearize_all


def _mirage_data(tmp_path, raw_nrc):
    root = tmp_path / "mirage_data"
    nrc = root / "nircam" / "darks" / "raw" / "A1" / NRC_RAW
    nrc.parent.mkdir(parents=True)
    shutil.copy(raw_nrc, nrc)
    fgs = root / "fgs" / "darks" / "raw" / FGS_RAW
    fgs.parent.mkdir(parents=True)
    J.write_raw_dark(fgs, "GUIDER1", ngroups=2, seed=4)
    nis = root / "niriss" / "darks" / "raw" / "NISNIRISSDARK-1_dms_uncal.fits"
    nis.parent.mkdir(parents=True)
    J.write_raw_dark(nis, "NIS", ramp=np.full((1, 1, 2048, 2048), 12000, np.uint16))  # no references: fails
    return root, nrc, fgs, nis


def test_linearize_all_names_skips_and_reports(tmp_path, raw_nrc, refs):
    root, nrc, fgs, nis = _mirage_data(tmp_path, raw_nrc)
    cal = refs["NRCA1"]["mask"].parent
    pairs = find_raw_darks(root)
    assert [p[0] for p in pairs] == [nrc, nis, fgs]
    for raw, out in pairs:
        assert out == root / linearized_name(raw.relative_to(root).as_posix())
    events = []
    summary = linearize_all(root, calibration_dir=cal, use_crds=False, jobs=2, progress=events.append)
    nrc_out = (
        root
        / "nircam/darks/linearized/A1"
        / ("Linearized_Dark_and_SBRefpix_" + NRC_RAW.replace("_level1b_uncal", "_uncal"))
    )
    fgs_out = root / "fgs/darks/linearized" / FGS_RAW.replace(".fits", "_linearized.fits")
    assert sorted(summary.done) == sorted([nrc_out, fgs_out])
    assert [r for r, _ in summary.failed] == [nis] and "no MASK reference file for NIRISS NIS" in summary.failed[0][1]
    assert not summary.ok
    kinds = sorted((e.kind, e.raw.name) for e in events)
    assert ("done", NRC_RAW) in kinds and ("start", FGS_RAW) in kinds and ("failed", nis.name) in kinds
    with fits.open(nrc_out) as h:
        np.testing.assert_array_equal(h["SCI"].data, _reference_result(raw_nrc, refs["NRCA1"]).sci)
    # the outputs are in the inventory, made locally: status counts them, verify re-hashes them
    inventory = Inventory.load(root)
    nrc_key = nrc_out.relative_to(root).as_posix() + ".gz"  # the collection's (compressed) name
    made = {k: r for k, r in inventory.records.items() if r.origin == MADE}
    assert set(made) == {nrc_key, fgs_out.relative_to(root).as_posix()}
    record = made[nrc_key]
    assert record.source == nrc.relative_to(root).as_posix()
    assert record.files[0].path == nrc_out.relative_to(root).as_posix()
    assert record.files[0].size == nrc_out.stat().st_size
    assert record.files[0].sha256 == hashlib.sha256(nrc_out.read_bytes()).hexdigest()
    assert nrc_key in load_catalog()
    assert any(g.instrument == "nircam" and g.installed == 1 for g in installed_status(root))
    assert verify_install(root) == {}
    with open(nrc_out, "r+b") as f:  # same size, different content: only a re-hash sees it
        f.seek(-100, os.SEEK_END)
        f.write(b"x")
    assert verify_install(root) == {nrc_key: [(record.files[0].path, "content differs (sha256)")]}
    nrc_out.unlink()
    assert linearize_all(root, calibration_dir=cal, use_crds=False, jobs=1).done == [nrc_out]
    assert verify_install(root) == {}
    # a second run skips what is there
    events.clear()
    again = linearize_all(root, calibration_dir=cal, use_crds=False, jobs=1, progress=events.append)
    assert sorted(again.skipped) == sorted([nrc_out, fgs_out]) and again.done == []
    assert {e.kind for e in events} == {"skipped", "failed"}
    for folder in (nrc_out.parent, fgs_out.parent):
        assert _no_partial_files(folder) == []


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts what is submitted to it."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submits = []
        self._count = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        name = getattr(fn, "__name__", repr(fn))
        if name == "execute_task":  # a batch task: count the work it wraps
            name = getattr(args[1], "__name__", repr(args[1]))
        with self._count:
            self.submits.append(name)
        return super().submit(fn, *args, **kwargs)


def test_files_and_tiles_run_through_the_callers_executors(tmp_path, raw_nrc, refs):
    root, nrc, fgs, nis = _mirage_data(tmp_path, raw_nrc)
    cal = refs["NRCA1"]["mask"].parent
    with CountingExecutor(2) as files:
        summary = linearize_all(root, calibration_dir=cal, use_crds=False, jobs=2, executor=files)
    assert len(summary.done) == 2 and files.submits == ["linearize_job"] * 2
    with CountingExecutor(2) as tiles:
        out = linearize_dark(raw_nrc, tmp_path / "tiles.fits", executor=tiles, tile_rows=256, **refs["NRCA1"])
    reads = [name for name in tiles.submits if name == "_read"]
    assert len(reads) == 2  # groups 1 and 2 read ahead while the previous group is processed
    assert len(tiles.submits) - len(reads) == 3 * 2 * (2048 // 256)  # 3 groups, two passes, 8 tiles each
    with fits.open(out) as h:
        np.testing.assert_array_equal(h["SCI"].data, _reference_result(raw_nrc, refs["NRCA1"]).sci)


def test_linearize_all_needs_a_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MIRAGE_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="MIRAGE_DATA"):
        linearize_all()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        linearize_all(tmp_path / "nowhere")


def test_default_output_names():
    assert default_output_name(NRC_RAW, "nircam").startswith("Linearized_Dark_and_SBRefpix_NRCNRCA1")
    assert default_output_name("x_dms_uncal.fits", "niriss") == (
        "Linearized_Dark_and_SBRefpix_x_dms_uncal_linear_dark_prep_object.fits"
    )
    assert default_output_name("x_dms_uncal.fits", "fgs") == "x_dms_uncal_linearized.fits"
    assert default_output_name("x.fits", "") == "x_linearized.fits"


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_single_file_and_errors(tmp_path, raw_nrc, refs):
    from mirage_data.cli import main

    r = refs["NRCA1"]
    runner = CliRunner()
    out = tmp_path / "o.fits"
    args = [
        "linearize",
        str(raw_nrc),
        "--mask",
        str(r["mask"]),
        "--saturation",
        str(r["saturation"]),
        "--superbias",
        str(r["superbias"]),
        "--linearity",
        str(r["linearity"]),
        "-o",
        str(out),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert out.exists() and "->" in result.output
    result = runner.invoke(main, args)  # exists
    assert result.exit_code == 2 and "exists" in result.output
    # another detector's mask
    result = runner.invoke(main, args[:3] + [str(refs["GUIDER1"]["mask"])] + args[4:] + ["--overwrite"])
    assert result.exit_code == 2 and "is for detector GUIDER1" in result.output
    # folder output with the collection's name, files from a calibration folder
    dest = tmp_path / "dest"
    dest.mkdir()
    result = runner.invoke(
        main, ["linearize", str(raw_nrc), "--calibration-dir", str(r["mask"].parent), "--no-crds", "-o", str(dest)]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in dest.iterdir()] == [default_output_name(NRC_RAW, "nircam")]
    result = runner.invoke(main, ["linearize"])
    assert result.exit_code == 2 and "--all" in result.output


def test_cli_all_in_a_subprocess(tmp_path, raw_nrc, refs):
    root, nrc, fgs, nis = _mirage_data(tmp_path, raw_nrc)
    nis.unlink()
    env = dict(os.environ, MIRAGE_DATA=str(root))
    script = Path(sys.executable).parent / "mirage-data"  # the installed command, as users run it
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        str(script),
        "linearize",
        "--all",
        "--calibration-dir",
        str(refs["NRCA1"]["mask"].parent),
        "--no-crds",
        "-j",
        "2",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 linearized, 0 already there, 0 failed" in done.stdout
    # the worker processes (spawned) import the linearization and not the command line's HTTP
    # and gzip stack: each import is listed once per process that made it (-X importtime)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")]
    assert imported.count("mirage_data.darks.linearize") == 3  # the parent and two workers
    for heavy in ("isal", "requests", "click", "rich"):
        assert imported.count(heavy) <= 1, f"{heavy} imported by a worker"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 linearized, 2 already there" in again.stdout


# ---------------------------------------------------------------------------------------------
# Memory


def test_peak_memory_stays_below_the_ramp_size(tmp_path, refs):
    """A 48-group ramp (384 MB raw, 768 MB as float32) linearizes in well under its size."""
    ngroups = 48
    path = tmp_path / "long_uncal.fits"
    primary = fits.PrimaryHDU()
    primary.header.update(
        {
            "INSTRUME": "NIRCAM",
            "DETECTOR": "NRCA1",
            "FASTAXIS": -1,
            "SLOWAXIS": 2,
            "NFRAMES": 1,
            "READPATT": "RAPID",
            "NINTS": 1,
            "NGROUPS": ngroups,
        }
    )
    sci = fits.ImageHDU(name="SCI")
    sci.header.update(
        {
            "BITPIX": 16,
            "NAXIS": 4,
            "NAXIS1": 2048,
            "NAXIS2": 2048,
            "NAXIS3": ngroups,
            "NAXIS4": 1,
            "BZERO": 32768,
            "BSCALE": 1,
        }
    )
    with open(path, "wb") as f:  # stream the ramp to disk, group by group
        f.write(primary.header.tostring().encode())
        f.write(sci.header.tostring().encode())
        base = (np.arange(2048 * 2048, dtype=np.int64) % 997 + 11000).reshape(2048, 2048)
        for g in range(ngroups):
            f.write((base + 7 * g - 32768).astype(">i2").tobytes())
        f.write(b"\0" * (-f.tell() % 2880))
    raw_bytes = path.stat().st_size
    # VmHWM: the peak of this process image only (ru_maxrss would include the forked parent)
    code = (
        "import re, sys; from mirage_data.darks.linearize import linearize_dark; "
        "linearize_dark(sys.argv[1], sys.argv[2], mask=sys.argv[3], saturation=sys.argv[4], "
        "superbias=sys.argv[5], linearity=sys.argv[6]); "
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)) * 1024)"
    )
    r = refs["NRCA1"]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(path),
            str(tmp_path / "out.fits"),
            str(r["mask"]),
            str(r["saturation"]),
            str(r["superbias"]),
            str(r["linearity"]),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split()[-1])
    assert (tmp_path / "out.fits").stat().st_size > 4 * raw_bytes
    assert peak < raw_bytes, f"peak RSS {peak / 2**20:.0f} MB for a {raw_bytes / 2**20:.0f} MB raw dark"
    assert peak < 400 * 2**20
