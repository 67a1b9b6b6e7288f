"""Reading Mirage yaml files and the problems found before Mirage runs (no network, no CRDS).

Yaml files are written as Mirage 2.5's generator writes them (`mirage_yamls.yaml_text`); the
query parameters and tables are compared with Mirage 2.5's own code (``mirage`` is installed
as the yardstick).
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import pytest
import yaml
from astropy.io import fits

import mirage_yamls as M
from mirage_data.collection.catalog import load_catalog
from mirage_data.exposures import psf as P
from mirage_data.exposures.bill import ERROR, WARNING, Planner
from mirage_data.exposures.rules import CRDS_KEYS, IMAGING_EXP_TYPE, READ_PATTERNS, crds_query
from mirage_data.exposures.yaml_input import ExposureError, find_yaml_files, read_exposure

TODAY = datetime.date.today().isoformat()


@pytest.fixture(scope="module")
def mirage_modules(tmp_path_factory):
    """Mirage 2.5's crds_tools and constants (its logging writes a log file in the current folder)."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("mirage_log"))
    try:
        from mirage.reference_files import crds_tools
        from mirage.utils import constants
    finally:
        os.chdir(here)
    return crds_tools, constants


def planner(md, catalog=None):
    return Planner(md, md, catalog or load_catalog(), TODAY, "00:00:00")


def problems(bill, severity=ERROR):
    return [p.message for p in bill.problems if p.severity == severity]


# ------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    "instrument, kw, expect",
    [
        ("nircam", {}, ("nircam", "imaging", "A1", "NRCA1", 3, 1)),
        (
            "nircam",
            {"aperture": "NRCB5_SUB160", "nint": 4, "readpatt": "DEEP8"},
            ("nircam", "imaging", "B5", "NRCB5", 3, 4),
        ),
        (
            "nircam",
            {"mode": "wfss", "aperture": "NRCA5_FULL", "pupil": "GRISMR"},
            ("nircam", "wfss", "A5", "NRCA5", 3, 1),
        ),
        ("niriss", {"mode": "soss", "aperture": "NIS_SUBSTRIP256"}, ("niriss", "soss", "NIS", "NIS", 3, 1)),
        ("fgs", {"aperture": "FGS2_FULL", "ngroup": 7}, ("fgs", "imaging", "GUIDER2", "FGS2", 7, 1)),
    ],
)
def test_reads_generator_yaml(tmp_path, instrument, kw, expect):
    exp = read_exposure(M.write_yaml(tmp_path, "x.yaml", instrument, **kw))
    assert (exp.instrument, exp.mode, exp.detector, exp.psf_detector, exp.ngroup, exp.nint) == expect
    assert exp.reffiles["gain"] == "crds" and exp.value("cosmicRay", "library") == "SUNMAX"


@pytest.mark.parametrize(
    "text, message",
    [
        ("Inst: [unclosed\n", r"not valid YAML at line 2"),
        ("- just\n- a list\n", r"not a Mirage input yaml"),
        (
            M.yaml_text().replace("instrument: NIRCam", "instrument: MIRI"),
            r"unknown instrument 'MIRI'; accepted: NIRCam",
        ),
        (
            M.yaml_text().replace("readpatt: RAPID", "readpatt: FAST"),
            r"unknown NIRCam readout pattern 'FAST'; accepted: RAPID",
        ),
        (M.yaml_text().replace("array_name: NRCA1_FULL", "array_name: NIS_CEN"), r"not a NIRCam aperture"),
        (M.yaml_text().replace("ngroup: 3", "ngroup: zero"), r"Readout:ngroup is 'zero'; accepted: an integer >= 1"),
        (M.yaml_text().replace("mode: imaging", "mode: coronagraphy"), r"unknown NIRCam mode 'coronagraphy'"),
        (M.yaml_text().replace("cosmicRay:", "cosmic:"), r"no 'cosmicRay:' section"),
    ],
)
def test_bad_yaml_gives_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ExposureError, match=message) as err:
        read_exposure(path)
    assert "\n" not in str(err.value)


def test_unreadable_file_and_folders(tmp_path):
    with pytest.raises(ExposureError, match="cannot read the file"):
        read_exposure(tmp_path / "missing.yaml")
    (tmp_path / "progA").mkdir()
    M.write_yaml(tmp_path / "progA", "b.yaml")
    M.write_yaml(tmp_path / "progA", "a.yml")
    (tmp_path / "progA" / "notes.txt").write_text("not a yaml")
    (tmp_path / "empty").mkdir()
    files, bad = find_yaml_files([tmp_path / "progA", tmp_path / "progA" / "a.yml", tmp_path / "empty", tmp_path / "x"])
    assert [f.name for f in files] == ["a.yml", "b.yaml"]  # sorted, each once
    assert [(p.name, m) for p, m in bad] == [
        ("empty", "folder holds no .yaml/.yml file"),
        ("x", "no such file or folder"),
    ]


# ------------------------------------------------------------------- Mirage's own parameters


@pytest.mark.parametrize(
    "instrument, kw",
    [
        ("nircam", {}),
        ("nircam", {"aperture": "NRCB5_SUB160", "readpatt": "DEEP8", "filter": "F444W", "pupil": "CLEAR"}),
        ("nircam", {"aperture": "NRCA5_GRISM256_F444W", "mode": "wfss", "pupil": "GRISMR", "filter": "F444W"}),
        ("niriss", {"filter": "CLEAR", "pupil": "F150W"}),
        ("niriss", {"mode": "wfss", "filter": "GR150R", "pupil": "F200W", "readpatt": "NIS"}),
        ("fgs", {"aperture": "FGS2_FULL"}),
    ],
)
def test_crds_query_is_mirages(tmp_path, mirage_modules, instrument, kw):
    """The CRDS parameters are those of Mirage's ``crds_tools.dict_from_yaml`` (date and time
    pinned instead of now)."""
    crds_tools, _ = mirage_modules
    params = yaml.safe_load(M.yaml_text(instrument, **kw))
    theirs = crds_tools.dict_from_yaml(params)
    exp = read_exposure(M.write_yaml(tmp_path, "x.yaml", instrument, **kw))
    ours = crds_query(exp.instrument, exp.readpatt, exp.array_name, exp.filter, exp.pupil, theirs["DATE-OBS"], "x")
    theirs["TIME-OBS"] = "x"
    assert ours == theirs


def test_tables_are_mirages(mirage_modules):
    _, constants = mirage_modules
    assert {k: v for k, v in constants.CRDS_FILE_TYPES.items() if k != "transmission"} == CRDS_KEYS
    assert IMAGING_EXP_TYPE == {i: constants.EXPTYPES[i]["imaging"] for i in ("nircam", "niriss", "fgs")}
    assert (P.NIRISS_PUPIL_WHEEL_FILTERS, P.NIRCAM_PUPIL_WHEEL_FILTERS) == (
        tuple(constants.NIRISS_PUPIL_WHEEL_FILTERS),
        tuple(constants.NIRCAM_PUPIL_WHEEL_FILTERS),
    )
    from importlib import resources

    config = resources.files("mirage") / "config"
    for instrument, name in (
        ("nircam", "nircam_read_pattern_definitions.list"),
        ("niriss", "niriss_readout_pattern.txt"),
        ("fgs", "guider_readout_pattern.txt"),
    ):
        rows = [line.split() for line in (config / name).read_text().splitlines() if line.strip()]
        table = {r[0]: (int(r[1]), int(r[2])) for r in rows if not r[0].startswith("#") and r[0] != "name"}
        assert table == READ_PATTERNS[instrument]


# --------------------------------------------------------------------- cosmic rays, darks


@pytest.mark.parametrize(
    "library, message",
    [
        ("FLARE", "'FLARE' (as Mirage's docs spell it) fails in Mirage; write FLARES"),
        ("sunmin", "'sunmin' must be upper case (SUNMIN)"),
        ("Flares", "'Flares' must be upper case (FLARES)"),
        ("SOLARMAX", "'SOLARMAX' is unknown; accepted: SUNMAX, SUNMIN, FLARES"),
    ],
)
def test_cosmic_ray_library(tmp_path, library, message):
    md = tmp_path / "mirage_data"
    bill = planner(md).plan(read_exposure(M.write_yaml(tmp_path, "x.yaml", cr_library=library)))
    found = [m for m in problems(bill) if "cosmicRay" in m]
    assert len(found) == 1 and found[0].startswith(f"cosmicRay:library {message}"), found
    assert not any("cosmic_ray" in f for f in bill.files)  # nothing fetched for a library Mirage cannot use
    good = planner(md).plan(read_exposure(M.write_yaml(tmp_path, "y.yaml", cr_library="FLARES")))
    assert not [m for m in problems(good) if "cosmicRay" in m]
    assert "nircam/cosmic_ray_library/mirage_nircam_cr_library.tar.gz" in good.files


def _install_darks(md, frames=M.DARK_FRAMES):
    for (inst, det), entries in M.dark_entries().items():
        for e in entries:
            path = md / e.install_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(M.dark_bytes(inst, det, "linearized", frames))


@pytest.mark.parametrize(
    "readpatt, ngroup, severity, text",
    [
        ("RAPID", 10, None, None),  # 10 frames of 10
        ("SHALLOW4", 2, None, None),  # 2 x (4 + 1) = 10
        ("RAPID", 11, WARNING, "11 groups of RAPID need 11 frames, the dark"),
        ("BRIGHT2", 9, WARNING, "need 18 frames"),
        ("RAPID", 20, ERROR, "need 20 frames"),  # exactly twice
        ("DEEP8", 1, ERROR, "1 groups of DEEP8 need 20 frames"),
    ],
)
def test_frames_beyond_the_dark(tmp_path, readpatt, ngroup, severity, text):
    md = tmp_path / "mirage_data"
    _install_darks(md)
    yml = M.write_yaml(tmp_path, "x.yaml", readpatt=readpatt, ngroup=ngroup, mirage_data=str(md))
    bill = planner(md).plan(read_exposure(yml))
    found = [(p.severity, p.message) for p in bill.problems if "frames" in p.message]
    if severity is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0][0] == severity and text in found[0][1], found
        assert "has 10" in found[0][1]


def test_readout_pattern_the_dark_cannot_provide(tmp_path):
    md = tmp_path / "mirage_data"
    own = tmp_path / "own_darks"
    own.mkdir()
    dark = own / "bright2_dark.fits"
    data = fits.HDUList.fromstring(M.dark_bytes("nircam", "A1", "linearized"))
    data[0].header["READPATT"] = "BRIGHT2"
    data.writeto(dark)
    cases = {"DEEP8": True, "RAPID": True, "BRIGHT2": False}
    for readpatt, bad in cases.items():
        yml = M.write_yaml(tmp_path, f"{readpatt}.yaml", readpatt=readpatt, ngroup=1, linearized_darkfile=str(dark))
        found = [m for m in problems(planner(md).plan(read_exposure(yml))) if "cannot be made" in m]
        assert bool(found) == bad, (readpatt, found)
    assert "readout pattern DEEP8 cannot be made from dark bright2_dark.fits (BRIGHT2)" in found[0] if found else True
    # a NIRISS dark for NIRCam: RAPID-type but not the same (Mirage's rapids must be equal)
    nis = own / "nis.fits"
    hdul = fits.HDUList.fromstring(M.dark_bytes("niriss", "NIS", "linearized"))
    hdul[0].header["DETECTOR"] = "NRCA1"
    hdul.writeto(nis)
    yml = M.write_yaml(tmp_path, "nis.yaml", linearized_darkfile=str(nis))
    assert any(
        "cannot be made from dark nis.fits (NISRAPID)" in m for m in problems(planner(md).plan(read_exposure(yml)))
    )


def test_dark_folder_glob_mixing_detectors(tmp_path):
    md = tmp_path / "mirage_data"
    folder = tmp_path / "my_darks"
    folder.mkdir()
    (folder / "a1_first.fits").write_bytes(M.dark_bytes("nircam", "A1", "linearized"))
    (folder / "a1_second.fits").write_bytes(M.dark_bytes("nircam", "A1", "linearized"))
    one = M.write_yaml(tmp_path, "one.yaml", nint=1, linearized_darkfile=str(folder / "a1_first.fits"))
    two = M.write_yaml(tmp_path, "two.yaml", nint=2, linearized_darkfile=str(folder / "a1_first.fits"))
    assert problems(planner(md).plan(read_exposure(two))) == []
    (folder / "b2.fits").write_bytes(M.dark_bytes("nircam", "B2", "linearized"))
    found = problems(planner(md).plan(read_exposure(two)))
    assert found == [
        f"nint=2: Mirage picks darks from every *.fits in {folder}, which holds files not of NRCA1: "
        "b2.fits (NRCB2); keep only NRCA1 darks there"
    ]
    assert problems(planner(md).plan(read_exposure(one))) == []  # nint = 1 reads only the named file
    # FGS: Mirage globs *_497_* (GUIDER1) there, so GUIDER2 files beside are fine ...
    fgs = tmp_path / "fgs_darks"
    fgs.mkdir()
    (fgs / "x_1_497_a.fits").write_bytes(M.dark_bytes("fgs", "GUIDER1", "linearized"))
    (fgs / "x_1_498_b.fits").write_bytes(M.dark_bytes("fgs", "GUIDER2", "linearized"))
    g1 = M.write_yaml(tmp_path, "g1.yaml", "fgs", nint=3, linearized_darkfile=str(fgs / "x_1_497_a.fits"))
    assert problems(planner(md).plan(read_exposure(g1))) == []
    # ... but a GUIDER2 file that matches the GUIDER1 glob is caught
    (fgs / "y_1_497_c.fits").write_bytes(M.dark_bytes("fgs", "GUIDER2", "linearized", detector="GUIDER2"))
    assert any("y_1_497_c.fits (GUIDER2)" in m for m in problems(planner(md).plan(read_exposure(g1))))


def test_nint_needs_same_detector_darks_once(tmp_path):
    """nint > 1: min(nint, available) same-detector collection darks, all in one folder; identical
    needs of several exposures resolved once."""
    md = tmp_path / "mirage_data"
    p = planner(md)
    a1 = [e.relative_path for e in M.dark_entries()[("nircam", "A1")]]
    full = load_catalog()
    all_a1 = sorted(e.relative_path for e in full if e.dark_kind == "linearized" and e.detectors == ("A1",))
    bills = [p.plan(read_exposure(M.write_yaml(tmp_path, f"n{n}.yaml", nint=n))) for n in (1, 2, 3, 9)]
    darks = [[f for f in b.files if "/darks/" in f] for b in bills]
    assert darks[0] == [a1[0]]
    assert len(darks[1]) == 2 and len(darks[2]) == 3 and a1[0] in darks[1]
    assert sorted(darks[3]) == all_a1  # only 5 exist: all of them
    assert p.to_fetch >= set(all_a1)


# ------------------------------------------------------------------------------------ PSF


def _library(folder, name, cards, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(M.psf_core_bytes(cards, **kw))


def test_psf_matching_follows_mirage(tmp_path):
    lib = tmp_path / "own_psfs"
    wings = lib / "psf_wings"
    # NIRISS pupil-wheel filter: yaml CLEAR/F150W, file named f150w_clear, header F150W/CLEARP
    _library(
        lib,
        "niriss_nis_f150w_clear_fovp5_samp2_npsf4_predicted_realization0.fits",
        M.psf_cards("niriss", "NIS", "F150W", "CLEARP"),
        scale=0.84 * 0.95,
    )
    # NIRCam pupil-wheel filter F405N: header F405N/CLEAR means F444W/F405N
    _library(
        lib,
        "nircam_nrca5_f444w_f405n_fovp5_samp2_npsf4_predicted_realization0.fits",
        M.psf_cards("nircam", "NRCA5", "F405N", "CLEAR"),
    )
    # a name Mirage's glob misses: found by the header scan
    _library(lib, "my_own_name.fits", M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR"))
    # FGS: Mirage searches fgs_fgs1_* with DETECTOR FGS1
    _library(lib, "fgs_fgs1_fovp5_samp2_npsf4_predicted_realization0.fits", M.psf_cards("fgs", "FGS1", "N/A", "N/A"))
    wings.mkdir()
    req = P.PsfRequest.for_exposure("niriss", "NIS", "CLEAR", "F150W", "predicted", 0)
    assert P.core_pattern(req) == ("niriss_nis_f150w_clear_fovp*_samp*_npsf*_predicted_realization0.fits", 1.0)
    assert P.find_library(lib, req, default=False).name.startswith("niriss_nis_f150w_clear")
    clearp = P.PsfRequest.for_exposure("niriss", "NIS", "F277W", "CLEARP", "predicted", 2)
    assert P.core_pattern(clearp) == ("niriss_nis_f277w_clearp_fovp*_samp*_npsf*_predicted_realization2.fits", 0.84)
    nrm = P.PsfRequest.for_exposure("niriss", "NIS", "F480M", "NRM", "requirements", 0)
    assert P.core_pattern(nrm)[0].startswith("niriss_nis_f480m_mask_nrm_") and P.core_pattern(nrm)[1] == 0.17
    assert P.wings_pattern(req) == "niriss_nis_clear_f150w_fovp*_samp*_predicted_realization0.fits"  # no mapping
    req = P.PsfRequest.for_exposure("nircam", "NRCA5", "F444W", "F405N", "predicted", 0)
    assert P.find_library(lib, req, default=False).name.startswith("nircam_nrca5_f444w_f405n")
    req = P.PsfRequest.for_exposure("nircam", "NRCA1", "F200W", "CLEAR", "predicted", 0)
    assert P.find_library(lib, req, default=False).name == "my_own_name.fits"
    req = P.PsfRequest.for_exposure("fgs", "FGS1", "N/A", "N/A", "predicted", 0)
    assert P.find_library(lib, req, default=False).name.startswith("fgs_fgs1")
    # grism pupils use the CLEAR library
    req = P.PsfRequest.for_exposure("nircam", "NRCA1", "F200W", "GRISMR", "predicted", 0)
    assert req.pupil == "CLEAR"
    # two matches: Mirage stops
    _library(lib, "another_copy.fits", M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR"))
    with pytest.raises(P.PsfProblem, match="more than one PSF library .* another_copy.fits, my_own_name.fits"):
        P.find_library(
            lib, P.PsfRequest.for_exposure("nircam", "NRCA1", "F200W", "CLEAR", "predicted", 0), default=False
        )
    # realization is checked for the default library only
    req1 = P.PsfRequest.for_exposure("fgs", "FGS1", "N/A", "N/A", "predicted", 1)
    with pytest.raises(P.PsfProblem, match="no PSF library"):
        P.find_library(lib, req1, default=True)
    # NIRISS pair Mirage cannot name (its NameError)
    with pytest.raises(P.PsfProblem, match="NIRISS filter F277W/pupil F150W has no PSF library naming"):
        P.core_pattern(P.PsfRequest.for_exposure("niriss", "NIS", "F277W", "F150W", "predicted", 0))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h, d: h.remove("OPD_FILE"), "primary header lacks OPD_FILE (Mirage stops on it)"),
        (lambda h, d: h.remove("OVERSAMP"), "primary header lacks OVERSAMP"),
        (lambda h, d: h.remove("DET_YX3"), "DET_YX3 missing or not '(y, x)'"),
        (lambda h, d: h.set("DET_YX0", "1024 1024"), "DET_YX0 missing or not '(y, x)'"),
        (lambda h, d: d.__imul__(0.5), "PSF 0 sums to 0.5 x OVERSAMP**2; Mirage accepts 0.8 to 1.1"),
        (lambda h, d: d.__imul__(1.2), "PSF 0 sums to 1.2 x OVERSAMP**2"),
    ],
)
def test_custom_psf_library_checks(tmp_path, change, message):
    lib = tmp_path / "own"
    name = "nircam_nrca1_f200w_clear_fovp5_samp2_npsf4_predicted_realization0.fits"
    _library(lib, name, M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR"))
    (lib / "psf_wings").mkdir()
    wings_name = "nircam_nrca1_f200w_clear_fovp11_samp1_predicted_realization0.fits"
    (lib / "psf_wings" / wings_name).write_bytes(M.psf_wings_bytes(M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR")))
    yml = M.write_yaml(tmp_path, "x.yaml", psfpath=str(lib))
    md = tmp_path / "mirage_data"
    assert [m for m in problems(planner(md).plan(read_exposure(yml))) if "PSF" in m] == []  # the good library
    with fits.open(lib / name, mode="update") as hdul:
        data = hdul[0].data.astype(np.float64)
        change(hdul[0].header, data)
        hdul[0].data = data.astype(np.float32)
    P._header.cache_clear()
    found = [m for m in problems(planner(md).plan(read_exposure(yml))) if "PSF" in m]
    assert len(found) == 1 and message in found[0] and found[0].startswith("custom PSF library: "), found


def test_custom_psf_wings_checks(tmp_path):
    lib = tmp_path / "own"
    _library(
        lib,
        "nircam_nrca1_f200w_clear_fovp5_samp2_npsf4_predicted_realization0.fits",
        M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR"),
    )
    wings = lib / "psf_wings" / "nircam_nrca1_f200w_clear_fovp12_samp1_predicted_realization0.fits"
    wings.parent.mkdir()
    wings.write_bytes(M.psf_wings_bytes(M.psf_cards("nircam", "NRCA1", "F200W", "CLEAR"), size=12))
    yml = M.write_yaml(tmp_path, "x.yaml", psfpath=str(lib))
    found = problems(planner(tmp_path / "md").plan(read_exposure(yml)))
    assert [m for m in found if "wings" in m] == [
        f"custom PSF library: {wings.name}: wings image is 12x12; Mirage crops one pixel all round and needs odd "
        "sizes after that (so an odd-sized image)"
    ]
    no_wings = M.write_yaml(tmp_path, "y.yaml", psfpath=str(lib), add_psf_wings=False)
    assert problems(planner(tmp_path / "md").plan(read_exposure(no_wings))) == []
    # a wings file without DET_DIST is not found (Mirage's confirmation reads DET_DIST) nor accepted
    fits.HDUList([fits.PrimaryHDU(np.ones((11, 11)))]).writeto(wings, overwrite=True)
    P._header.cache_clear()
    found = problems(planner(tmp_path / "md").plan(read_exposure(yml)))
    assert any("custom PSF library: no PSF wings for nircam NRCA1 F200W/CLEAR" in m for m in found), found


def _with(path, old, new):
    path.write_text(path.read_text().replace(old, new))
    return path


def test_other_modes_what_they_need(tmp_path):
    md = tmp_path / "mirage_data"
    p = planner(md)
    soss = p.plan(
        read_exposure(
            M.write_yaml(
                tmp_path,
                "soss.yaml",
                "niriss",
                mode="soss",
                aperture="NIS_SUBSTRIP256",
                filter="CLEAR",
                pupil="GR700XD",
            )
        )
    )
    assert "niriss/soss/niriss_soss_psfs.tar.gz" in soss.files and not any("gridded" in f for f in soss.files)
    assert soss.problems == [] and soss.other_needs[0] == "source spectrum (and a transit model for time series)"
    wfss = p.plan(
        read_exposure(
            M.write_yaml(
                tmp_path, "wfss.yaml", mode="wfss", aperture="NRCA5_GRISM256_F444W", filter="F444W", pupil="GRISMR"
            )
        )
    )
    assert wfss.other_needs[0] == "grism configuration files (GRISM_NIRCAM repository)"
    flat_query = dict(p.queries[wfss.crds["pixelflat"][0]])
    gain_query = dict(p.queries[wfss.crds["gain"][0]])
    assert (flat_query["PUPIL"], gain_query["PUPIL"]) == ("CLEAR", "GRISMR")  # Mirage's imaging flat for WFSS
    assert "nircam/psf_libraries/gridded_psf_libraries/nircam_Amodule_det345_gridded_psf_library.tar.gz" in wfss.files
    niriss_wfss = p.plan(
        read_exposure(M.write_yaml(tmp_path, "nw.yaml", "niriss", mode="wfss", filter="GR150C", pupil="F200W"))
    )
    assert "POM transmission" in niriss_wfss.other_needs[0]
    with_ghosts = _with(M.write_yaml(tmp_path, "g.yaml", "niriss"), "add_ghosts: False", "add_ghosts: True")
    ghosts = p.plan(read_exposure(with_ghosts))
    assert (
        "niriss/ghosts/niriss_ghost_stamps.tar.gz" in ghosts.files
        and "niriss/ghosts/niriss_ghost_stamps.tar.gz" in p.to_fetch
    )
    assert ghosts.other_needs == [
        "network at run time: the ghost gap summary Mirage downloads from GitHub",
        "network at run time: jwst_backgrounds' cache for bkgdrate 'low'",
    ]
    # keys set to none are not looked up; a key missing from the yaml is (Mirage sets it to crds)
    plain = p.plan(read_exposure(M.write_yaml(tmp_path, "n.yaml", reffiles={"photom": "None", "gain": "none"})))
    assert set(plain.crds) == {
        "badpixmask",
        "superbias",
        "linearity",
        "saturation",
        "pixelflat",
        "astrometric",
        "ipc",
        "pixelAreaMap",
    }
