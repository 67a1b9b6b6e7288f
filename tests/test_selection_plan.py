"""Selections and plans over the real catalog (no download)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from mirage_data.collection.catalog import DETECTORS, Catalog, CatalogEntry, load_catalog
from mirage_data.collection.selection import Selection, SelectionError, parse_instruments
from mirage_data.download.api import download_reffiles
from mirage_data.download.plan import NotEnoughSpace, make_plan

CATALOG = load_catalog()


def test_catalog_has_the_whole_collection():
    assert len(CATALOG) == 169
    groups = Counter((e.instrument, e.group, e.dark_kind) for e in CATALOG)
    assert groups[("nircam", "darks", "raw")] == 50 and groups[("nircam", "darks", "linearized")] == 50
    assert groups[("niriss", "darks", "raw")] == 20 and groups[("fgs", "darks", "linearized")] == 8
    assert groups[("nircam", "psf_library", None)] == 4 and groups[("nircam", "psf_wings", None)] == 1
    for e in CATALOG:
        if e.is_dark:
            assert e.detector in DETECTORS[e.instrument]
            assert e.install_path.endswith(".fits") and e.install_path.startswith(
                f"{e.instrument}/darks/{e.dark_kind}/"
            )
        else:
            assert e.is_archive


def test_default_selection_is_mirages():
    files = Selection().files(CATALOG)
    assert len(files) == 91
    total = sum(e.approx_size for e in files)
    assert 504e9 < total < 506e9


@pytest.mark.parametrize(
    "value, expected",
    [
        ("all", ("nircam", "niriss", "fgs")),
        ("NIRCam", ("nircam",)),
        (" niriss , FGS ", ("niriss", "fgs")),
        (["fgs", "nircam"], ("nircam", "fgs")),
        ("nircam,all", ("nircam", "niriss", "fgs")),
    ],
)
def test_instrument_spellings(value, expected):
    assert parse_instruments(value) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(instrument="miri"), "unknown instrument 'miri'; accepted: nircam, niriss, fgs"),
        (dict(instrument=""), "no instrument given"),
        (dict(instrument=42), "instrument must be"),
        (dict(dark_type="linear"), "unknown dark_type 'linear'; accepted: linearized, raw, both"),
        (dict(psf_version="webbpsf"), "unknown psf_version 'webbpsf'; accepted: gridded, subpixel"),
        (dict(psf_version="subpixel"), "no longer has"),
    ],
)
def test_bad_values_name_the_accepted_ones(kwargs, message):
    with pytest.raises(SelectionError, match=message):
        Selection(**kwargs)


def test_subpixel_with_skip_psfs_is_fine():
    files = Selection(psf_version="subpixel", skip_psfs=True, instrument="fgs").files(CATALOG)
    assert not any(e.group.startswith("psf") for e in files)


def test_single_dark_keeps_one_per_detector_and_both_guiders():
    files = Selection(single_dark=True, dark_type="both").files(CATALOG)
    darks = Counter((e.instrument, e.detector, e.dark_kind) for e in files if e.is_dark)
    expected = {(i, d, k) for i in DETECTORS for d in DETECTORS[i] for k in ("raw", "linearized")}
    assert set(darks) == expected and set(darks.values()) == {1}


@pytest.mark.parametrize(
    "kwargs, absent_groups",
    [
        (dict(skip_darks=True), {"darks"}),
        (dict(skip_psfs=True), {"psf_library", "psf_wings"}),
        (dict(skip_cosmic_rays=True), {"cosmic_ray_library"}),
        (dict(skip_soss=True), {"soss"}),
    ],
)
def test_skips(kwargs, absent_groups):
    groups = {e.group for e in Selection(**kwargs).files(CATALOG)}
    assert not groups & absent_groups
    assert {"ghosts", "distortion"} <= groups  # always fetched with their instrument


def test_dark_types():
    def kinds(dark_type):
        return {e.dark_kind for e in Selection(dark_type=dark_type).files(CATALOG) if e.is_dark}

    assert kinds("raw") == {"raw"} and kinds("linearized") == {"linearized"} and kinds("both") == {"raw", "linearized"}


def test_plan_refuses_what_will_not_fit(tmp_path):
    huge = Catalog(
        entries=(
            CatalogEntry("fgs", "darks", CATALOG.entries[-30].relative_path, "raw", ("GUIDER2",), approx_size=10**16),
        ),
    )
    plan = make_plan(tmp_path, Selection(instrument="fgs", dark_type="raw"), huge)
    with pytest.raises(NotEnoughSpace, match="needs about 20 PB"):
        plan.check_space()
    # The download refuses before fetching (there is no server behind this mirror at all).
    with pytest.raises(NotEnoughSpace):
        download_reffiles(tmp_path, "fgs", dark_type="raw", catalog=huge, mirror="http://127.0.0.1:9/", quiet=True)
    assert not any((tmp_path / "mirage_data" / "fgs").glob("**/*"))


def test_cli_plan_nircam_single_dark(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mirage_data", "plan", str(tmp_path), "--instrument", "nircam", "--single-dark"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    darks = [line for line in lines if "nircam/darks/linearized/" in line]
    assert len(darks) == 10
    for det in DETECTORS["nircam"]:
        assert any(f"/linearized/{det}/" in line for line in darks)
    for name in (
        "_gridded_psf_library.tar.gz",
        "psf_wings_library",
        "mirage_nircam_cr_library",
        "nircam_distortion_files",
    ):
        assert any(name in line for line in lines), name
    assert "63.8 GB" in out.stdout and "To fetch: 17 files" in out.stdout


def test_cli_bad_value_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mirage_data", "plan", str(tmp_path), "--dark-type", "lin"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "accepted: linearized, raw, both" in out.stderr
