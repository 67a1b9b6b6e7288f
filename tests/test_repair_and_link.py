"""`verify` and `repair` agree and settle; `--link` is checked and records only what it computed
(issue 8, section 1). Real FITS files served over loopback HTTP (or from a mirror folder)."""

from __future__ import annotations

import hashlib
import json

from fits_files import (
    G1_RAW,
    PSF_12,
    PSF_345,
    PSF_FOLDER,
    dark,
    fetch,
    gz,
    psf_file,
    serve,
    tarball,
)
from mirage_data.download.api import DownloadFailed, download_reffiles, repair_install
from mirage_data.install.upkeep import verify_install
from mirage_data.testing.server import CollectionServer


def records(mirage_data):
    return json.loads((mirage_data / ".mirage-data" / "inventory.json").read_text())["files"]


def repair(mirage_data, root):
    with CollectionServer(root) as server:
        return repair_install(mirage_data, mirror=server.url, quiet=True)


SHARED = f"{PSF_FOLDER}/nircam_nrca1_f200w_clear_fovp8_samp2_npsf1_requirements_realization0.fits"
OWN = f"{PSF_FOLDER}/nircam_nrca3_f200w_clear_fovp8_samp2_npsf1_requirements_realization0.fits"


def test_repair_restores_a_file_two_archives_share_and_then_settles(tmp_path):
    files = {
        PSF_12: tarball([(SHARED, psf_file())]),
        PSF_345: tarball([(SHARED, psf_file()), (OWN, psf_file("NRCA3"))]),
    }
    outcome, mirage_data = fetch(tmp_path, files)
    assert not isinstance(outcome, Exception), outcome
    shared = mirage_data / SHARED.removeprefix("mirage_data/")
    shared.write_bytes(b"damaged")
    assert set(verify_install(mirage_data)) == {PSF_12.relative_path, PSF_345.relative_path}
    damaged, report = repair(mirage_data, tmp_path / "remote")
    assert len(damaged) == 2 and report is not None and not report.failed
    assert verify_install(mirage_data) == {}
    assert shared.read_bytes() == psf_file()
    # Settled: a second repair finds nothing to do.
    assert repair(mirage_data, tmp_path / "remote") == ([], None)


def test_archives_with_different_files_at_one_path_do_not_make_verify_fail_forever(tmp_path):
    files = {
        PSF_12: tarball([(SHARED, psf_file(seed=1))]),
        PSF_345: tarball([(SHARED, psf_file(seed=2)), (OWN, psf_file("NRCA3"))]),
    }
    outcome, mirage_data = fetch(tmp_path, files)
    assert isinstance(outcome, DownloadFailed) and "would replace a different file" in str(outcome)
    assert verify_install(mirage_data) == {}
    assert repair(mirage_data, tmp_path / "remote") == ([], None)
    assert verify_install(mirage_data) == {}


def test_repair_on_a_healthy_tree_does_nothing(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(dark("raw"))})
    assert not isinstance(outcome, Exception), outcome
    installed = mirage_data / G1_RAW.install_path
    before = installed.stat()
    assert repair(mirage_data, tmp_path / "remote") == ([], None)
    after = installed.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_repair_never_writes_unverified_bytes_over_an_installed_file(tmp_path):
    good = gz(dark("raw", ngroups=2))
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: good})
    assert not isinstance(outcome, Exception), outcome
    installed = mirage_data / G1_RAW.install_path
    installed.write_bytes(installed.read_bytes()[:-2880])  # damaged on disk
    damaged_bytes = installed.read_bytes()
    remote = tmp_path / "remote" / G1_RAW.relative_path
    for other in (gz(dark("raw", ngroups=3)), gz(b"<html><body>maintenance</body></html>")):
        remote.write_bytes(other)  # a valid dark of the right detector, but not the installed one; a page
        damaged, report = repair(mirage_data, tmp_path / "remote")
        assert damaged == [G1_RAW.relative_path] and len(report.failed) == 1, report
        assert installed.read_bytes() == damaged_bytes
    remote.write_bytes(good)
    damaged, report = repair(mirage_data, tmp_path / "remote")
    assert damaged == [G1_RAW.relative_path] and not report.failed
    assert verify_install(mirage_data) == {}


def test_new_bytes_replace_an_installed_file_only_once_the_user_deleted_it(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(dark("raw", ngroups=2))})
    assert not isinstance(outcome, Exception), outcome
    newer = dark("raw", ngroups=3)
    (tmp_path / "remote" / G1_RAW.relative_path).write_bytes(gz(newer))
    installed = mirage_data / G1_RAW.install_path
    installed.write_bytes(b"damaged")
    damaged, report = repair(mirage_data, tmp_path / "remote")
    assert "delete the installed file" in report.failed[0].error
    installed.unlink()
    damaged, report = repair(mirage_data, tmp_path / "remote")
    assert damaged == [G1_RAW.relative_path] and not report.failed
    assert installed.read_bytes() == newer
    assert verify_install(mirage_data) == {}


# ---------------------------------------------------------------------------- --link


def link_mirror(tmp_path, beside: bytes, checksums: bool = True):
    """A mirror folder holding G1_RAW's .fits.gz and, beside it, *beside* as its .fits."""
    root = tmp_path / "mirror"
    data = gz(dark("raw"))
    catalog = serve(root, {G1_RAW: data})
    (root / G1_RAW.install_path).write_bytes(beside)
    if checksums:
        catalog = catalog.with_checksums({G1_RAW.relative_path: (len(data), hashlib.sha256(data).hexdigest())})
    return root, catalog


def test_link_records_only_what_it_computed(tmp_path):
    good = dark("raw")
    root, catalog = link_mirror(tmp_path, good)
    result = download_reffiles(
        tmp_path / "dest", "fgs", dark_type="raw", mirror=root, catalog=catalog, link=True, quiet=True
    )
    mirage_data = result.mirage_data
    assert (mirage_data / G1_RAW.install_path).is_symlink()
    record = records(mirage_data)[G1_RAW.relative_path]
    # The .gz was never read: its size and hash are not recorded (not even the catalog's).
    assert record["source_sha256"] == "" and record["source_size"] == 0
    assert record["files"][0]["sha256"] == hashlib.sha256(good).hexdigest()
    assert verify_install(mirage_data) == {}


def test_link_to_another_guiders_dark_is_refused(tmp_path):
    root, catalog = link_mirror(tmp_path, dark("raw", detector="GUIDER2"))
    try:
        download_reffiles(
            tmp_path / "dest", "fgs", dark_type="raw", mirror=root, catalog=catalog, link=True, quiet=True
        )
    except DownloadFailed as exc:
        assert "DETECTOR is GUIDER2, expected GUIDER1" in str(exc)
    else:
        raise AssertionError("the wrong dark was linked")
    assert not (tmp_path / "dest/mirage_data" / G1_RAW.install_path).exists()


def test_link_to_a_truncated_fits_is_refused(tmp_path):
    root, catalog = link_mirror(tmp_path, dark("raw")[:-2880])
    try:
        download_reffiles(
            tmp_path / "dest", "fgs", dark_type="raw", mirror=root, catalog=catalog, link=True, quiet=True
        )
    except DownloadFailed as exc:
        assert "truncated" in str(exc)
    else:
        raise AssertionError("a truncated dark was linked")
