"""Tests of the sample-collection generator (mirage_data.testing.sample)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from astropy.io import fits

from mirage_data.collection.catalog import DETECTORS, crds_detector_name, linearized_name, load_catalog
from mirage_data.testing import sample
from mirage_data.testing.sample import DETECTOR_AXES, make_sample_collection, sample_entries

NGROUPS = 2
INSTRUME = {"nircam": "NIRCAM", "niriss": "NIRISS", "fgs": "FGS"}
READPATT = {"nircam": "RAPID", "niriss": "NISRAPID", "fgs": "FGSRAPID"}
EXP_TYPE = {"nircam": "NRC_DARK", "niriss": "NIS_DARK", "fgs": "FGS_DARK"}
EXTRA = {("nircam", "A1"), ("niriss", "NIS"), ("fgs", "GUIDER2")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    catalog = make_sample_collection(root, ngroups=NGROUPS)
    return root, catalog


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _darks(catalog, kind):
    return [e for e in catalog if e.dark_kind == kind]


def _one_raw_per_instrument(catalog):
    seen = {}
    for e in _darks(catalog, "raw"):
        seen.setdefault(e.instrument, e)
    return list(seen.values())


# ---------------------------------------------------------------------------------- catalog


#: The real collection's list of files, kept outside the package (``../shared`` beside the
#: clone): an independent source for what the sample must look like.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "collection_files.tsv"

#: The reference list's group names -> (group, dark kind) in the package's catalog.
REFERENCE_GROUPS = {
    "dark_raw": ("darks", "raw"),
    "dark_linearized": ("darks", "linearized"),
    "cosmic_ray_library": ("cosmic_ray_library", None),
    "psf_gridded": ("psf_library", None),
    "psf_wings": ("psf_wings", None),
    "niriss_ghosts": ("ghosts", None),
    "niriss_soss": ("soss", None),
    "nircam_distortion": ("distortion", None),
}


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[str, str]]:
    """relative path -> (instrument, group) of every file of the real collection."""
    if not REFERENCE.is_file():
        pytest.fail(f"the reference list of the real collection is missing: {REFERENCE}")
    rows = [line.split("\t") for line in REFERENCE.read_text().splitlines() if line and not line.startswith("#")]
    assert rows[0] == ["instrument", "group", "relative_path"]
    return {path: (instrument, group) for instrument, group, path in rows[1:]}


def test_catalog_round_trips(generated):
    root, catalog = generated
    assert load_catalog(root / "catalog.tsv") == catalog
    assert catalog.base_url == root.resolve().as_uri() + "/"
    assert all(e.size is not None and e.sha256 for e in catalog)


def test_paths_and_classification_are_the_real_collections(generated, reference):
    _, catalog = generated
    for e in catalog:
        assert e.relative_path in reference, f"not a file of the real collection: {e.relative_path}"
        instrument, group = reference[e.relative_path]
        assert e.instrument == instrument, e.relative_path
        if e.is_dark:
            kind = REFERENCE_GROUPS[group][1]
            assert (e.group, e.dark_kind) == ("darks", kind), e.relative_path
            assert e.relative_path.startswith(f"{instrument}/darks/{kind}/")
            if instrument == "nircam":  # nircam/darks/<kind>/<detector>/<name>
                assert e.relative_path.split("/")[3] == e.detectors[0], e.relative_path
            elif instrument == "niriss":
                assert e.detectors == ("NIS",)
        else:
            assert e.group == REFERENCE_GROUPS[group][0], e.relative_path


def test_catalog_holds_every_non_dark_file(generated, reference):
    _, catalog = generated
    real_non_darks = {path for path, (_, group) in reference.items() if not group.startswith("dark_")}
    assert len(real_non_darks) == 13
    assert {e.relative_path for e in catalog if not e.is_dark} == real_non_darks
    assert all(e.is_archive for e in catalog if not e.is_dark)


def test_sizes_and_checksums_match_files(generated):
    root, catalog = generated
    for e in catalog:
        path = root / e.relative_path
        assert path.stat().st_size == e.size, e.relative_path
        assert _sha256(path) == e.sha256, e.relative_path
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_every_detector_has_raw_and_linearized_darks(generated):
    _, catalog = generated
    for instrument, detectors in DETECTORS.items():
        for detector in detectors:
            mine = [e for e in catalog if e.instrument == instrument and e.detectors == (detector,)]
            raws = [e for e in mine if e.dark_kind == "raw"]
            lins = [e for e in mine if e.dark_kind == "linearized"]
            expected = 2 if (instrument, detector) in EXTRA else 1
            assert len(raws) == len(lins) == expected, (instrument, detector)
            assert {linearized_name(r.relative_path) for r in raws} == {e.relative_path for e in lins}


def test_sample_entries_without_extra_darks():
    entries = sample_entries(extra_darks=False)
    darks = [e for e in entries if e.is_dark]
    assert len(darks) == 2 * sum(len(d) for d in DETECTORS.values())
    assert len(entries) == len(darks) + sum(1 for e in load_catalog() if not e.is_dark)


# ------------------------------------------------------------------------------------ darks


def _check_common_header(header, entry):
    crds = crds_detector_name(entry.instrument, entry.detectors[0])
    assert header["INSTRUME"] == INSTRUME[entry.instrument]
    assert header["DETECTOR"] == crds
    assert header["READPATT"] == READPATT[entry.instrument]
    assert (header["NINTS"], header["NGROUPS"], header["NFRAMES"], header["NSKIP"]) == (1, NGROUPS, 1, 0)
    assert (header["FASTAXIS"], header["SLOWAXIS"]) == DETECTOR_AXES[crds]
    assert header["TFRAME"] == pytest.approx(10.73676)
    assert header["TGROUP"] == pytest.approx(10.73676)
    assert header["SUBARRAY"] == "FULL"
    assert header["EXP_TYPE"] == EXP_TYPE[entry.instrument]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", header["DATE-OBS"])
    subarray = tuple(header[k] for k in ("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"))
    assert subarray == (1, 1, 2048, 2048)


def test_dark_headers(generated):
    root, catalog = generated
    for e in _darks(catalog, "raw") + _darks(catalog, "linearized"):
        with open(root / e.relative_path, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"  # gzip
        header = fits.getheader(root / e.relative_path)
        _check_common_header(header, e)
        if e.dark_kind == "linearized":
            for key in ("R_LINEAR", "R_MASK", "R_SATURA", "R_SUPERB"):
                assert re.fullmatch(rf"jwst_{e.instrument}_\w+_\d{{4}}\.fits", header[key]), key


@pytest.mark.parametrize("instrument", ["nircam", "niriss", "fgs"])
def test_raw_and_linearized_data(generated, instrument):
    root, catalog = generated
    raw = next(e for e in _one_raw_per_instrument(catalog) if e.instrument == instrument)
    with fits.open(root / raw.relative_path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "SCI", "ZEROFRAME"]
        assert hdus["SCI"].header["BITPIX"] == 16 and hdus["SCI"].header["BZERO"] == 32768
        raw_sci = hdus["SCI"].data
        assert raw_sci.dtype == np.uint16
        assert raw_sci.shape == (1, NGROUPS, 2048, 2048)
        assert hdus["ZEROFRAME"].data.dtype == np.uint16
        np.testing.assert_array_equal(hdus["ZEROFRAME"].data, raw_sci[:, 0])
        raw_sci = raw_sci.astype(np.float64)
    assert 10000 < np.median(raw_sci) < 14000  # bias level
    cds = raw_sci[0, 1] - raw_sci[0, 0]
    assert abs(np.median(cds)) < 3 and 1 < np.std(cds[np.abs(cds) < 30]) < 6  # read noise, few DN
    assert (cds > 20).sum() > 100  # hot pixels

    with fits.open(root / linearized_name(raw.relative_path)) as hdus:
        names = ["PRIMARY", "SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"]
        assert [h.name for h in hdus] == names
        for name, shape in [
            ("SCI", (1, NGROUPS, 2048, 2048)),
            ("SBANDREFPIX", (1, NGROUPS, 2048, 2048)),
            ("ZEROFRAME", (1, 2048, 2048)),
            ("ZEROSBANDREFPIX", (1, 2048, 2048)),
        ]:
            data = hdus[name].data
            assert data.shape == shape, name
            assert data.dtype.kind == "f" and data.dtype.itemsize == 4, name
            assert hdus[name].header["BITPIX"] == -32
        sci, sb = hdus["SCI"].data, hdus["SBANDREFPIX"].data
        np.testing.assert_array_equal(hdus["ZEROFRAME"].data, sci[:, 0])
        np.testing.assert_array_equal(hdus["ZEROSBANDREFPIX"].data, sb[:, 0])
        # SBANDREFPIX = raw - (raw after superbias and refpix): exact wherever the linearity
        # correction does nothing (everywhere but bright pixels).
        difference = raw_sci - sb - sci
        faint = np.abs(sci) < 50
        assert faint.mean() > 0.99
        assert np.all(difference[faint] == 0)
        assert 10000 < np.median(sb) < 14000
        assert np.all(sci * 8 == np.round(sci * 8))  # 1/8 DN grid


def test_darks_are_standard_gzip(generated):
    root, catalog = generated
    raw = _one_raw_per_instrument(catalog)[0]
    data = gzip.decompress((root / raw.relative_path).read_bytes())  # stdlib reader
    assert data.startswith(b"SIMPLE  =                    T")
    assert len(data) % 2880 == 0
    frame = 2048 * 2048 * 2
    assert len(data) > (NGROUPS + 1) * frame


# --------------------------------------------------------------------------------- archives


def _members(path):
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_archive_members_are_in_the_mirage_layout(generated):
    root, catalog = generated
    folders = {
        "cosmic_ray_library": "cosmic_ray_library",
        "psf_library": "gridded_psf_library",
        "psf_wings": "gridded_psf_library/psf_wings",
        "ghosts": "ghosts",
        "soss": "soss_psfs",
        "distortion": "reference_files/distortion",
    }
    for e in catalog:
        if e.is_dark:
            continue
        members = _members(root / e.relative_path)
        prefix = f"mirage_data/{e.instrument}/"
        folder = prefix + folders[e.group] + "/"
        files = [m for m in members if m.isfile()]
        assert files, e.relative_path
        for m in members:
            assert m.isfile() or m.isdir(), m.name
            assert not m.name.startswith("/") and ".." not in PurePosixPath(m.name).parts
            assert m.name in ("mirage_data", prefix.rstrip("/")) or m.name.startswith(prefix), m.name
        for m in files:
            assert m.name.startswith(folder) and "/" not in m.name[len(folder) :], m.name
        names = {m.name for m in members}
        for m in files:  # every folder above a file has its own entry
            for parent in list(PurePosixPath(m.name).parents)[:-1]:
                assert str(parent) in names


def test_cosmic_ray_libraries(generated):
    root, catalog = generated
    labels = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}
    for e in (e for e in catalog if e.group == "cosmic_ray_library"):
        names = {PurePosixPath(m.name).name for m in _members(root / e.relative_path) if m.isfile()}
        expected = {
            f"CRs_MCD1.7_{lib}_{nn}_IPC_{labels[e.instrument]}_{det}.fits"
            for lib in ("SUNMAX", "SUNMIN", "FLARES")
            for nn in ("00", "01")
            for det in DETECTORS[e.instrument]
        }
        assert names == expected
    fgs = next(e for e in catalog if e.group == "cosmic_ray_library" and e.instrument == "fgs")
    with tarfile.open(root / fgs.relative_path) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        with fits.open(tar.extractfile(member)) as hdus:
            stamps = hdus[1].data
    assert stamps.dtype.kind == "f" and stamps.dtype.itemsize == 4
    assert stamps.shape == (20, 21, 21) and stamps.max() > 0


PSF_NAME = re.compile(
    r"(?P<inst>nircam|niriss|fgs)_(?P<det>nrc[ab][1-5]|nis|guider[12])"
    r"(_(?P<filt>[a-z0-9]+)_(?P<pupil>[a-z0-9]+))?"
    r"_fovp\d+_samp\d+_npsf\d+_(predicted|requirements)_realization\d\.fits"
)


def test_psf_libraries_load_and_evaluate_with_photutils(generated, tmp_path):
    from photutils.psf import GriddedPSFModel

    root, catalog = generated
    libraries = [e for e in catalog if e.group == "psf_library"]
    for e in libraries:
        with tarfile.open(root / e.relative_path) as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            assert len(files) == len(e.detectors)
            for m in files:
                name = PurePosixPath(m.name).name
                match = PSF_NAME.fullmatch(name)
                assert match and match["inst"] == e.instrument, name
                assert (match["filt"] is None) == (e.instrument == "fgs")
            tar.extractall(tmp_path, filter="data")
    for instrument in ("nircam", "niriss", "fgs"):
        path = next((tmp_path / f"mirage_data/{instrument}/gridded_psf_library").glob("*.fits"))
        header = fits.getheader(path)
        for key in ("INSTRUME", "DETECTOR", "FILTER", "PUPIL", "OPD_FILE", "OPDSLICE", "OVERSAMP", "NUM_PSFS"):
            assert key in header, key
        assert header["NUM_PSFS"] == 4 and re.fullmatch(r"\(\d+\.\d, \d+\.\d\)", header["DET_YX0"])
        model = GriddedPSFModel.read(path)  # identified as the WebbPSF format
        assert model.data.shape == (4, 22, 22)
        assert tuple(np.atleast_1d(model.oversampling)) in ((2,), (2, 2))
        yy, xx = np.mgrid[1000:1041, 500:541]
        image = model.evaluate(xx, yy, flux=100.0, x_0=520.3, y_0=1020.7)
        assert image.sum() == pytest.approx(100.0, rel=0.02)  # sums to flux at detector sampling
        peak = np.unravel_index(np.argmax(image), image.shape)
        assert (yy[peak], xx[peak]) == (1021, 520)


def test_psf_wings(generated, tmp_path):
    root, catalog = generated
    wings = next(e for e in catalog if e.group == "psf_wings")
    with tarfile.open(root / wings.relative_path) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
        assert len(files) == len(DETECTORS["nircam"])
        with fits.open(tar.extractfile(files[0])) as hdus:
            image = hdus["DET_DIST"].data
            assert hdus["DET_DIST"].header["DETECTOR"].startswith("NRC")
            assert "OPD_FILE" in hdus[0].header
    assert image.shape[0] % 2 == 1 and image.shape[1] % 2 == 1
    for m in files:
        pattern = r"nircam_nrc[ab][1-5]_f\d{3}w_clear_fovp\d+_samp1_predicted_realization0\.fits"
        assert re.fullmatch(pattern, PurePosixPath(m.name).name)


def test_niriss_ghosts_soss_and_nircam_distortion(generated):
    root, catalog = generated

    def names(group):
        entry = next(e for e in catalog if e.group == group)
        return {PurePosixPath(m.name).name for m in _members(root / entry.relative_path) if m.isfile()}

    assert "niriss_ghost_cen.fits" in names("ghosts") and len(names("ghosts")) >= 2
    soss = names("soss")
    assert any(n.endswith(".npy") for n in soss) and any(n.endswith(".fits") for n in soss)
    assert len(names("distortion")) >= 2


# ---------------------------------------------------------------- determinism, idempotence


def test_generation_is_deterministic(generated, tmp_path):
    """Regenerate a dark pair per instrument and every archive: same bytes as the fixture."""
    root, catalog = generated
    by_path = {e.relative_path: e for e in catalog}
    results = {}
    for raw in _one_raw_per_instrument(catalog):
        lin = by_path[linearized_name(raw.relative_path)]
        results.update(sample.darks.write_dark_pair(tmp_path, raw, lin, NGROUPS, 0))
    for e in catalog:
        if not e.is_dark:
            results.update(sample.archives.write_archive(tmp_path, e, 0))
    for path, (size, sha256) in results.items():
        assert (size, sha256) == (by_path[path].size, by_path[path].sha256), path


def test_other_seed_gives_other_data(generated, tmp_path):
    root, catalog = generated
    e = next(e for e in catalog if e.group == "psf_library")
    assert sample.archives.write_archive(tmp_path, e, 1)[e.relative_path][1] != e.sha256


def test_second_call_generates_and_writes_nothing(generated, monkeypatch):
    root, catalog = generated
    mtimes = {e.relative_path: (root / e.relative_path).stat().st_mtime_ns for e in catalog}
    calls = []
    monkeypatch.setattr(sample.collection, "write_dark_pair", lambda *a: calls.append(a) or {})
    monkeypatch.setattr(sample.collection, "write_archive", lambda *a: calls.append(a) or {})
    again = make_sample_collection(root, ngroups=NGROUPS)
    assert calls == []  # nothing generated again
    assert again == catalog
    assert {p: (root / p).stat().st_mtime_ns for p in mtimes} == mtimes


def test_moved_folder_is_re_pointed_without_regenerating(generated, tmp_path):
    root, catalog = generated
    moved = tmp_path / "moved"
    os.rename(root, moved)
    try:
        mtimes = {e.relative_path: (moved / e.relative_path).stat().st_mtime_ns for e in catalog}
        again = make_sample_collection(moved, ngroups=NGROUPS)
        assert again.base_url == moved.resolve().as_uri() + "/"
        assert [(e.relative_path, e.size, e.sha256) for e in again] == [
            (e.relative_path, e.size, e.sha256) for e in catalog
        ]
        assert {p: (moved / p).stat().st_mtime_ns for p in mtimes} == mtimes
    finally:
        os.rename(moved, root)
        make_sample_collection(root, ngroups=NGROUPS)  # re-point back
    assert load_catalog(root / "catalog.tsv") == catalog


def test_other_parameters_are_not_taken_for_done(generated):
    root, _ = generated
    version = sample.collection._GENERATOR_VERSION
    same = {"generator_version": version, "ngroups": NGROUPS, "extra_darks": True, "seed": 0}
    assert sample.collection._existing_sample(root, same) is not None
    for change in ({"ngroups": 3}, {"seed": 1}, {"extra_darks": False}):
        assert sample.collection._existing_sample(root, {**same, **change}) is None


def test_missing_or_truncated_file_is_not_taken_for_done(tmp_path):
    # A tiny fake "generation": one archive plus catalog and parameters.
    entry = next(e for e in load_catalog() if e.group == "ghosts")
    size, sha256 = sample.archives.write_archive(tmp_path, entry, 0)[entry.relative_path]
    params = {"generator_version": sample.collection._GENERATOR_VERSION, "ngroups": 1, "extra_darks": True, "seed": 0}
    (tmp_path / sample.collection._PARAMS_NAME).write_text(json.dumps(params))
    checksums = {entry.relative_path: (size, sha256)}
    load_catalog().subset([entry.relative_path]).with_checksums(checksums).write(tmp_path / "catalog.tsv")
    assert sample.collection._existing_sample(tmp_path, params) is not None
    path = tmp_path / entry.relative_path
    path.write_bytes(path.read_bytes()[:-1])
    assert sample.collection._existing_sample(tmp_path, params) is None
    path.unlink()
    assert sample.collection._existing_sample(tmp_path, params) is None


def test_interrupted_dark_leaves_no_file_at_final_path(tmp_path, monkeypatch):
    catalog = load_catalog()
    raw = next(e for e in catalog if e.dark_kind == "raw" and e.instrument == "fgs")
    lin = catalog.get(linearized_name(raw.relative_path))
    original = sample.darks._float32_fits
    calls = []

    def failing(frame):  # interrupt after the first linearized group
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(frame)

    monkeypatch.setattr(sample.darks, "_float32_fits", failing)
    with pytest.raises(KeyboardInterrupt):
        sample.darks.write_dark_pair(tmp_path, raw, lin, 3, 0)
    assert not (tmp_path / raw.relative_path).exists()
    assert not (tmp_path / lin.relative_path).exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("ngroups", [0, -1, 2.5, True, "2"])
def test_bad_ngroups(tmp_path, ngroups):
    with pytest.raises(ValueError):
        make_sample_collection(tmp_path, ngroups=ngroups)
