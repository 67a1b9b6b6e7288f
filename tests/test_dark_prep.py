"""Prepared darks: continuation past the dark's end, segments, dark choice, memory, bad input.

(Equivalence with Mirage 2.5 itself: ``test_dark_prep_mirage.py`` and ``test_dark_prep_raw.py``.)
"""

from __future__ import annotations

import itertools
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import dark_prep_cases as C
from mirage_data.darks.prep import (
    DarkPrepError,
    DarkSource,
    choose_sources,
    mirage_lines,
    prepare_dark,
    read_dark_exposure,
)
from mirage_data.darks.segments import integration_segments

# ---------------------------------------------------------------------------------------------
# More frames than the dark has

#: Tolerances of the seam check, in units of each pixel's spread (robust sigma) of the dark's
#: own frame-to-frame steps before the seam.
MEDIAN_SHIFT = 0.25  # |median step after - median step before|, median over pixels
SPREAD_RATIO = (0.8, 1.25)  # spread after / spread before, median over pixels
SEAM_STEP = 1.5  # |step across each seam - median step before|, median over pixels (0.67 for noise)


def seam_check(ramp: np.ndarray, n: int) -> dict:
    """Steps after frame n - 1 against the steps before it, per pixel; returns statistics and 'ok'."""
    ramp = ramp.astype(np.float64)
    before, after = np.diff(ramp[:n], axis=0), np.diff(ramp[n - 1 :], axis=0)
    med_b, med_a = np.median(before, 0), np.median(after, 0)
    spread_b = 1.4826 * np.median(np.abs(before - med_b), 0)
    spread_a = 1.4826 * np.median(np.abs(after - med_a), 0)
    seams = [k - (n - 1) for k in range(n - 1, ramp.shape[0] - 1, n - 1)]  # steps into frames n, 2n-1, ...
    stats = {
        "median_shift": float(np.median(np.abs(med_a - med_b) / spread_b)),
        "spread_ratio": float(np.median(spread_a / spread_b)),
        "seam_step": max(float(np.median(np.abs(after[s] - med_b) / spread_b)) for s in seams),
    }
    stats["ok"] = (
        stats["median_shift"] <= MEDIAN_SHIFT
        and SPREAD_RATIO[0] <= stats["spread_ratio"] <= SPREAD_RATIO[1]
        and stats["seam_step"] <= SEAM_STEP
    )
    return stats


def _exposure(tmp_path, name, dark, patt, ngroup, nint=1, aperture="NRCB1_SUB160", instrument="nircam"):
    return C.write_yaml(
        tmp_path / f"{name}.yaml",
        instrument=instrument,
        aperture=aperture,
        readpatt=patt,
        ngroup=ngroup,
        nint=nint,
        out_dir=tmp_path / "out",
        linearized=dark,
    )


def test_continuation_keeps_accumulating_across_seams(tmp_path):
    n = 16
    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=n, seed=1)
    out = prepare_dark(_exposure(tmp_path, "long", dark, "RAPID", 4 * n))  # three seams
    assert out.padded
    p = C.read_product(out[0])
    with fits.open(dark) as h:
        np.testing.assert_array_equal(p["SCI"][0, :n], h["SCI"].data[0, :n, :160, :160])
    for ext in ("SCI", "SBANDREFPIX"):
        stats = seam_check(p[ext][0], n)
        assert stats["ok"], (ext, stats)
    # the rise over the whole ramp is the dark's rate times its length: no lost or doubled signal
    rise = np.median(p["SCI"][0, -1] - p["SCI"][0, 0])
    dark_rate = np.median((p["SCI"][0, n - 1] - p["SCI"][0, 0]) / (n - 1))
    assert abs(rise / (dark_rate * (4 * n - 1)) - 1) < 0.02
    assert abs(np.median(p["SBANDREFPIX"][0, -1]) / np.median(p["SBANDREFPIX"][0, 0]) - 1) < 0.01  # bias once
    # the check can fail: the same ramp with a 50 DN jump planted at the seam
    jumped = p["SCI"][0].copy()
    jumped[n:] += 50.0
    assert not seam_check(jumped, n)["ok"]


def test_continuation_of_group_averaged_output(tmp_path):
    """SHALLOW4 (5 frames per group) needing 3x the dark: the groups keep their spacing."""
    n = 20
    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=n, seed=2)
    p = C.read_product(prepare_dark(_exposure(tmp_path, "s4", dark, "SHALLOW4", 12))[0])
    steps = np.diff(p["SCI"][0].astype(np.float64), axis=0)
    med = np.median(steps, axis=(1, 2))
    assert np.all(np.abs(med / med[0] - 1) < 0.05), med  # 5 frames of dark current per group, every group


# ---------------------------------------------------------------------------------------------
# Segments


def test_segments_split_where_mirage_splits():
    from mirage.utils.file_splitting import find_file_splits

    logging.getLogger("mirage").setLevel(logging.ERROR)

    def mirage(xd, yd, ng, nf, ns, ni):  # dark_prep.py 684-714
        fpi = ng * (nf + ns)
        _, _, ii = find_file_splits(xd, yd, fpi, ni, frames_per_group=fpi / ng)
        forced = int(fpi / ng) * (ii[1] - ii[0])
        split, _, starts = find_file_splits(xd, yd, ng, ni, force_delta_int=forced)
        if len(starts) > 2:
            d = starts[1:] - starts[:-1]
            if d[-1] == 1 and d[0] != 1:
                starts[-2] -= 1
        return split, [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]

    shapes = [(2048, 2048), (160, 160), (64, 64), (2048, 64), (400, 400)]
    patterns = [(1, 0), (1, 1), (2, 0), (8, 12), (4, 1), (2, 18)]
    splits = 0
    for (xd, yd), (nf, ns), ng, ni in itertools.product(
        shapes, patterns, [1, 2, 5, 10, 20, 108], [1, 2, 3, 5, 37, 200]
    ):
        ours = integration_segments(xd, yd, ng, nf, ns, ni)
        assert ours == mirage(xd, yd, ng, nf, ns, ni), (xd, yd, nf, ns, ng, ni)
        splits += ours[0]
    assert splits > 50  # the grid reaches both kinds of split


def test_segment_files_named_as_mirage(tmp_path):
    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=6, seed=3)
    y = _exposure(tmp_path, "seg", dark, "RAPID", 5, nint=7)
    ex = read_dark_exposure(y)
    limit = 2.5 * 5 * 160 * 160  # a small pixel limit: 2 integrations per file
    split, segments = integration_segments(160, 160, 5, 1, 0, 7, pixel_limit=limit)
    # starts 0, 2, 4, 6: the last segment would hold one integration, so Mirage moves its start
    # back by one (leaving one in the segment before it): split exactly so
    assert split and segments == [(0, 2), (2, 4), (4, 5), (5, 7)]
    out = prepare_dark(y, pixel_limit=limit)
    assert [p.name for p in out] == [f"{ex.output_stem}_seg00{k}_linear_dark_prep_object.fits" for k in (1, 2, 3, 4)]
    assert [fits.getval(p, "NINTS") for p in out] == [2, 2, 1, 2]
    # integrations follow each other across the files, in the order of the sources
    whole = np.concatenate([C.read_product(p)["SCI"] for p in out])
    for j, s in enumerate(out.sources):
        with fits.open(s.path) as h:
            np.testing.assert_array_equal(whole[j], h["SCI"].data[s.integration, :5, :160, :160])


# ---------------------------------------------------------------------------------------------
# Which darks


def test_choice_is_seeded_same_detector_distinct(tmp_path):
    folder = tmp_path / "darks"
    sub = (160, 160)  # frames the size of NRCB1_SUB160: a prepared product has the same size
    own = C.write_linear_dark(folder / "a.fits", shape=sub, nframes=3, seed=1)
    C.write_linear_dark(folder / "b.fits", shape=sub, nframes=3, nints=2, seed=2)  # two integrations: two candidates
    C.write_linear_dark(folder / "c.fits", shape=sub, nframes=3, seed=3)
    C.write_linear_dark(folder / "x.fits", shape=sub, detector="NRCA1", nframes=3, seed=4)  # another detector
    (folder / "notes.fits").write_text("not FITS")
    C.write_linear_dark(folder / "small.fits", shape=(100, 100), nframes=3, seed=5)  # another frame size
    prepared = prepare_dark(_exposure(tmp_path, "early", own, "RAPID", 3), folder)  # a product in the folder
    ex = read_dark_exposure(_exposure(tmp_path, "n4", own, "RAPID", 2, nint=4))
    first, seed, reused = choose_sources(ex, seed=11)
    assert (first, seed, reused) == choose_sources(ex, seed=11)
    assert first[0] == DarkSource(own, 0) and len(set(first)) == 4 and not reused
    assert all(s.path.name not in ("x.fits", "small.fits", prepared[0].name) for s in first)
    orders = {tuple(choose_sources(ex, seed=s)[0]) for s in range(10)}
    assert len(orders) > 1
    ex5 = read_dark_exposure(_exposure(tmp_path, "n5", own, "RAPID", 2, nint=5))
    five, _, reused = choose_sources(ex5, seed=0)
    assert reused and five[4] == five[0]
    # the product records seed and sources
    out = prepare_dark(_exposure(tmp_path, "n4b", own, "RAPID", 2, nint=4), seed=11)
    h = fits.getheader(out[0])
    assert h["DARKSEED"] == 11 and [h[f"DKS{j:05d}"] for j in range(1, 5)] == [str(s) for s in first]


def test_python_lines_for_mirage(tmp_path):
    lines = mirage_lines("a.yaml", [tmp_path / "x_linear_dark_prep_object.fits"])
    assert (
        lines[1]
        == f"sim = ImgSim(paramfile='a.yaml', override_dark={str(tmp_path / 'x_linear_dark_prep_object.fits')!r})"
    )
    two = mirage_lines("a.yaml", ["s1.fits", "s2.fits"], mode="wfss")
    assert two[0] == "from mirage.wfss_simulator import WFSSSim" and "override_dark=['s1.fits', 's2.fits']" in two[1]


# ---------------------------------------------------------------------------------------------
# Memory


def _peak(yaml_path, out) -> int:
    tracemalloc.start()
    try:
        prepare_dark(yaml_path, out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_dark(tmp_path):
    """numpy's allocations are traced: the peak is a few frames, for a dark (and ramp) 4x longer."""
    prepare_dark(_exposure(tmp_path, "warm", C.write_linear_dark(tmp_path / "w" / "d.fits", nframes=2), "RAPID", 2))
    peaks = {}
    for n in (24, 96):
        dark = C.write_linear_dark(tmp_path / f"d{n}" / "dark.fits", nframes=n, seed=n)
        peaks[n] = _peak(_exposure(tmp_path, f"m{n}", dark, "RAPID", n), tmp_path / f"o{n}")
    frame = 168 * 168 * 4
    assert peaks[96] <= peaks[24] * 1.2 + frame, peaks
    assert peaks[96] < 96 * 160 * 160 * 4 / 4, peaks  # far below one integration of SCI


def test_bands_of_rows_give_the_whole_frame_result(tmp_path, monkeypatch):
    """Frames averaged band by band (a short last band, columns cropped, frames continued past the
    dark's end, zero frames from the file and from frame 0) equal the product made in one band."""
    import mirage_data.darks.prep as prep

    for name, zeroframe in (("zf", True), ("nozf", False)):
        dark = C.write_linear_dark(tmp_path / name / "dark.fits", nframes=20, seed=3, zeroframe=zeroframe)
        y = _exposure(tmp_path, name, dark, "DEEP8", 2)  # frames 0-27 of 20: continued; 160 of 168 columns
        one = C.read_product(prepare_dark(y, tmp_path / f"{name}_one")[0])
        monkeypatch.setattr(prep, "_BAND_BYTES", 7 * 168 * 4)  # bands of 7 rows: 22 full bands and one of 6
        bands = C.read_product(prepare_dark(y, tmp_path / f"{name}_bands")[0])
        monkeypatch.undo()
        for ext in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"):
            np.testing.assert_array_equal(bands[ext], one[ext], err_msg=f"{name} {ext}")


def test_linearized_dark_path_imports_no_heavy_packages(tmp_path):
    """A whole process preparing a linearized dark imports neither pysiaf (SIAF bounds cached),
    nor the network or pipeline packages: their imports would dominate a small dark's time."""
    import subprocess
    import sys

    y = _exposure(tmp_path, "imp", C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=4), "RAPID", 2)
    prepare_dark(y, tmp_path / "warm")  # the SIAF bounds cache exists from here on
    code = (
        "import sys; from mirage_data.darks.prep import prepare_dark; "
        f"prepare_dark({str(y)!r}, {str(tmp_path / 'out')!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pysiaf', 'requests', 'isal', 'crds', 'jwst', 'stdatamodels', 'stcal', 'dask', 'rich', 'click'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error, nothing written


@pytest.mark.parametrize(
    "problem, expect",
    [
        ("missing_dark", "does not exist"),
        ("wrong_pattern_dark", "needs a BRIGHT2 dark or a one-frame dark"),
        ("small_dark", "do not contain NRCB1_SUB160"),
        ("unknown_pattern", "unknown nircam readout pattern"),
        ("unknown_aperture", "is not a NIRCam SIAF aperture"),
        ("mixed_sources", "several detectors"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, problem, expect):
    d = tmp_path / "d"
    good = C.write_linear_dark(d / "good.fits", nframes=4)
    kw, patt, aperture = {}, "BRIGHT2", "NRCB1_SUB160"
    dark = good
    if problem == "missing_dark":
        dark = d / "absent.fits"
    elif problem == "wrong_pattern_dark":
        dark = C.write_linear_dark(d / "deep8.fits", nframes=4, readpatt="DEEP8")
    elif problem == "small_dark":
        dark = C.write_linear_dark(d / "small.fits", shape=(100, 100), nframes=4)
    elif problem == "unknown_pattern":
        patt = "BRIGHT3"
    elif problem == "unknown_aperture":
        aperture = "NRCB1_SUB999"
    elif problem == "mixed_sources":
        other = C.write_linear_dark(d / "other.fits", detector="NRCA1", nframes=4)
        kw["sources"] = [DarkSource(good), DarkSource(other)]
    y = C.write_yaml(
        tmp_path / "y.yaml",
        instrument="nircam",
        aperture=aperture,
        readpatt=patt,
        ngroup=2,
        nint=2 if problem == "mixed_sources" else 1,
        out_dir=tmp_path / "out",
        linearized=dark,
    )
    with pytest.raises(DarkPrepError, match=expect) as info:
        prepare_dark(y, **kw)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_product_kept_when_a_rerun_fails(tmp_path):
    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=4)
    y = _exposure(tmp_path, "keep", dark, "RAPID", 3)
    [first] = prepare_dark(y)
    before = Path(first).read_bytes()

    def interrupted(done, total):  # the run stops after its first group (as on Ctrl-C)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dark(y, threads=1, progress=interrupted)
    with open(dark, "r+b") as f:  # and a damaged (truncated) dark: refused before anything is written
        f.truncate(f.seek(0, 2) - 5000)
    with pytest.raises(DarkPrepError):
        prepare_dark(y)
    assert Path(first).read_bytes() == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == [first.name]  # no temporary left either


def test_map_of_yamls_to_prepared_darks(tmp_path):
    import json

    from mirage_data.darks.programs import DARK_MAP_NAME, prepare_darks

    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=4)
    good = _exposure(tmp_path, "good", dark, "BRIGHT2", 2)
    bad = _exposure(tmp_path, "bad", tmp_path / "d" / "absent.fits", "RAPID", 2)
    run = prepare_darks([good, bad], tmp_path / "map")
    assert [p.yaml_path for p in run.prepared] == [good] and [f for f, _ in run.failed] == [bad]
    entry = json.loads((tmp_path / "map" / DARK_MAP_NAME).read_text())[str(good)]
    assert entry["override_dark"] == str(run.prepared[0][0]) and Path(entry["override_dark"]).is_file()
    assert entry["python"] == mirage_lines(good, list(run.prepared[0]))
    text = run.describe()
    assert "bad.yaml: error:" in text and "ImgSim(paramfile=" in text


def test_siaf_bounds_are_mirages_for_every_aperture(tmp_path, monkeypatch):
    """All 500-odd NIRCam, NIRISS and FGS apertures, against Mirage's own sci_subarray_corners,
    computed afresh into an empty cache folder and then read back from it."""
    import pysiaf
    from mirage.utils.siaf_interface import sci_subarray_corners

    from mirage_data.darks import apertures

    logging.getLogger("mirage").setLevel(logging.ERROR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    apertures._all_bounds.cache_clear()
    try:
        checked = 0
        for inst, name in (("nircam", "NIRCam"), ("niriss", "NIRISS"), ("fgs", "FGS")):
            siaf = pysiaf.Siaf(name)
            for aperture in siaf.apernames:
                try:
                    xc, yc = sci_subarray_corners(name, aperture, siaf=siaf)
                    theirs = (int(xc[0]), int(yc[0]), int(xc[1]), int(yc[1]))
                except Exception:  # noqa: BLE001 (Mirage has no bounds for it either)
                    theirs = None
                try:
                    ours = apertures.aperture_bounds(inst, aperture)
                except ValueError:
                    ours = None
                assert ours == theirs, (aperture, ours, theirs)
                checked += 1
        assert checked > 500
        cached = sorted((tmp_path / "mirage-data").glob("siaf_bounds_*.json"))
        assert len(cached) == 3
        apertures._all_bounds.cache_clear()
        assert apertures.aperture_bounds("nircam", "NRCA3_SUB64P") == (0, 100, 63, 163)  # from the file
    finally:
        apertures._all_bounds.cache_clear()
