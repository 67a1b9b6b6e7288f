"""End to end: the sample collection served on loopback, downloaded into the Mirage layout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from astropy.io import fits

from mirage_data import download_reffiles
from mirage_data.collection.catalog import DETECTORS, INSTRUMENTS
from mirage_data.collection.layout import find_cosmic_ray_libraries, find_darks, psf_library_folder
from mirage_data.collection.selection import SelectionError
from mirage_data.demo import run_demo
from mirage_data.download.api import DownloadFolderError


def layout_files(mirage_data: Path) -> set[str]:
    """Files in the layout (mirage-data's own state folder left out)."""
    return {
        str(p.relative_to(mirage_data))
        for p in mirage_data.rglob("*")
        if p.is_file() and ".mirage-data" not in p.relative_to(mirage_data).parts
    }


def fetch(dest, server, catalog, *args, **kw):
    kw.setdefault("quiet", True)
    return download_reffiles(dest, *args, mirror=server.url, catalog=catalog, **kw)


def test_default_selection_installs_what_mirage_finds(sample_server, tmp_path):
    server, catalog = sample_server
    # The seed's call, positionally, as Mirage's documentation gives it.
    result = download_reffiles(tmp_path, "all", "gridded", "linearized", mirror=server.url, catalog=catalog, quiet=True)
    mirage_data = tmp_path / "mirage_data"
    assert result.mirage_data == mirage_data
    assert result.export_lines[0] == f'export MIRAGE_DATA="{mirage_data}"'
    for inst in INSTRUMENTS:
        for det in DETECTORS[inst]:
            darks = find_darks(mirage_data, inst, det, "linearized")
            assert darks, (inst, det)
            with fits.open(darks[0]) as hdul:
                assert [h.name for h in hdul] == ["PRIMARY", "SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"]
                assert (
                    hdul["SCI"].data.shape[-2:] == (2048, 2048)
                    and hdul["SCI"].data.dtype.kind == "f"
                    and hdul["SCI"].data.dtype.itemsize == 4
                )
            assert not find_darks(mirage_data, inst, det, "raw")
            for lib in ("SUNMIN", "SUNMAX", "FLARES"):
                assert find_cosmic_ray_libraries(mirage_data, inst, det, lib), (inst, det, lib)
        assert list(psf_library_folder(mirage_data, inst).glob("*.fits"))
    assert list((mirage_data / "nircam/gridded_psf_library/psf_wings").glob("*.fits"))
    assert (mirage_data / "niriss/ghosts/niriss_ghost_cen.fits").is_file()
    assert list((mirage_data / "niriss/soss_psfs").iterdir())
    assert list((mirage_data / "nircam/reference_files").rglob("*"))
    # Every installed dark equals the decompressed remote file; no .gz or archive left behind.
    files = layout_files(mirage_data)
    assert not [f for f in files if f.endswith((".gz", ".tar"))]
    import gzip

    for e in catalog:
        if e.is_dark and e.dark_kind == "linearized":
            remote = gzip.decompress((server.root / e.relative_path).read_bytes())
            assert (mirage_data / e.install_path).read_bytes() == remote


def test_rerun_fetches_nothing_and_is_quick(sample_server, tmp_path):
    server, catalog = sample_server
    fetch(tmp_path, server, catalog, instrument="fgs", dark_type="both")
    server.reset_stats()
    t0 = time.monotonic()
    result = fetch(tmp_path, server, catalog, instrument="fgs", dark_type="both")
    assert time.monotonic() - t0 < 3
    assert result.report is None and server.bytes_served == 0 and not server.requests
    assert "already installed" in result.summary()


@pytest.mark.parametrize(
    "kwargs, expect",
    [
        (dict(instrument="niriss", dark_type="raw"), {("niriss", "raw"): 2}),
        (
            dict(instrument="fgs, NIRISS", dark_type="both", single_dark=True),
            {("fgs", "raw"): 2, ("fgs", "linearized"): 2, ("niriss", "raw"): 1, ("niriss", "linearized"): 1},
        ),
        (dict(instrument=["nircam"], single_dark=True), {("nircam", "linearized"): 10}),
        (dict(instrument="nircam", dark_type="raw"), {("nircam", "raw"): 11}),
    ],
)
def test_dark_selections(sample_server, tmp_path, kwargs, expect):
    server, catalog = sample_server
    fetch(tmp_path, server, catalog, skip_psfs=True, skip_cosmic_rays=True, **kwargs)
    files = layout_files(tmp_path / "mirage_data")
    darks = Counter(tuple(f.split("/")[0:3:2]) for f in files if "/darks/" in f)
    assert dict(darks) == expect


def test_single_dark_serves_both_guiders(sample_server, tmp_path):
    server, catalog = sample_server
    fetch(tmp_path, server, catalog, instrument="fgs", single_dark=True, skip_psfs=True, skip_cosmic_rays=True)
    mirage_data = tmp_path / "mirage_data"
    assert len(find_darks(mirage_data, "fgs", "GUIDER1")) == 1
    assert len(find_darks(mirage_data, "fgs", "GUIDER2")) == 1


@pytest.mark.parametrize(
    "skip, absent",
    [
        ("skip_darks", "darks"),
        ("skip_psfs", "gridded_psf_library"),
        ("skip_cosmic_rays", "cosmic_ray_library"),
        ("skip_soss", "soss_psfs"),
    ],
)
def test_skips(sample_server, tmp_path, skip, absent):
    server, catalog = sample_server
    fetch(tmp_path, server, catalog, instrument="niriss", single_dark=True, **{skip: True})
    folders = {f.split("/")[1] for f in layout_files(tmp_path / "mirage_data")}
    assert absent not in folders
    assert "ghosts" in folders


@pytest.mark.parametrize(
    "kwargs",
    [dict(instrument="nirspec"), dict(dark_type="linear"), dict(psf_version="subpixel"), dict(instrument=[])],
)
def test_bad_selection_touches_nothing(sample_server, tmp_path, kwargs):
    server, catalog = sample_server
    with pytest.raises(SelectionError, match="accepted|no longer has|no instrument"):
        fetch(tmp_path / "dest", server, catalog, **kwargs)
    assert not (tmp_path / "dest").exists()


def test_unwritable_folder_is_a_clear_error(sample_server, tmp_path):
    server, catalog = sample_server
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DownloadFolderError, match="cannot write to"):
        fetch(blocker / "sub", server, catalog, instrument="fgs")
    assert blocker.read_text() == "not a folder"


def test_missing_folder_is_created(sample_server, tmp_path):
    server, catalog = sample_server
    dest = tmp_path / "new" / "deeper"
    fetch(dest, server, catalog, instrument="fgs", single_dark=True, skip_psfs=True)
    assert find_darks(dest / "mirage_data", "fgs", "GUIDER1")


def test_local_mirror_copy_and_link(sample_collection, tmp_path):
    root, catalog = sample_collection
    kw = dict(instrument="fgs", dark_type="raw", single_dark=True, skip_psfs=True, skip_cosmic_rays=True, quiet=True)
    download_reffiles(tmp_path / "copy", mirror=root, catalog=catalog, **kw)
    copied = find_darks(tmp_path / "copy" / "mirage_data", "fgs", "GUIDER1", "raw")[0]
    assert not copied.is_symlink()
    # A share that also holds the decompressed darks: --link links to them.
    share = tmp_path / "share"
    import gzip
    import shutil

    for e in catalog:
        if e.instrument == "fgs" and e.dark_kind == "raw":
            (share / e.relative_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / e.relative_path, share / e.relative_path)
            (share / e.install_path).write_bytes(gzip.decompress((share / e.relative_path).read_bytes()))
    download_reffiles(tmp_path / "linked", mirror=f"file://{share}", catalog=catalog, link=True, **kw)
    linked = find_darks(tmp_path / "linked" / "mirage_data", "fgs", "GUIDER1", "raw")[0]
    assert linked.is_symlink() and linked.resolve().is_relative_to(share)
    assert linked.read_bytes() == copied.read_bytes()


def test_mirror_from_environment(sample_server, tmp_path, monkeypatch):
    server, catalog = sample_server
    monkeypatch.setenv("MIRAGE_DATA_MIRROR", server.url)
    download_reffiles(tmp_path, "fgs", skip_darks=True, catalog=catalog, quiet=True)
    assert server.bytes_served > 0


def test_cli_download_prints_export_lines(sample_server, tmp_path):
    server, catalog = sample_server
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    args = [
        sys.executable,
        "-m",
        "mirage_data",
        "download",
        str(tmp_path / "d"),
        "-i",
        "niriss",
        "--single-dark",
        "--mirror",
        server.url,
        "--catalog",
        str(catalog_file),
    ]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    mirage_data = tmp_path / "d" / "mirage_data"
    assert f'export MIRAGE_DATA="{mirage_data}"' in out.stdout
    assert f'setenv MIRAGE_DATA "{mirage_data}"' in out.stdout
    assert "installed" in out.stderr  # log lines, since stderr is not a terminal
    dry = subprocess.run(args + ["--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and "installed" in dry.stdout and "To fetch: 0 files" in dry.stdout


def test_demo(tmp_path):
    t0 = time.monotonic()
    result = run_demo(tmp_path / "demo", quiet=True)
    elapsed = time.monotonic() - t0
    mirage_data = tmp_path / "demo" / "mirage_data"
    assert result.export_lines[0] == f'export MIRAGE_DATA="{mirage_data}"'
    folders = {"/".join(f.split("/")[:2]) for f in layout_files(mirage_data)}
    for needed in (
        "nircam/darks",
        "nircam/gridded_psf_library",
        "nircam/cosmic_ray_library",
        "nircam/reference_files",
        "niriss/darks",
        "niriss/ghosts",
        "niriss/soss_psfs",
        "fgs/darks",
        "fgs/gridded_psf_library",
    ):
        assert needed in folders, needed
    assert elapsed < 120  # generous: the README promises under a minute on 2 cores
    out = subprocess.run(
        [sys.executable, "-m", "mirage_data", "env", str(tmp_path / "demo")], capture_output=True, text=True
    )
    assert out.returncode == 0 and 'export MIRAGE_DATA="' in out.stdout
    assert os.environ.get("MIRAGE_DATA") != str(mirage_data)
    located = subprocess.run(
        [sys.executable, "-m", "mirage_data", "locate", "NRCBLONG", "--mirage-data", str(mirage_data)],
        capture_output=True,
        text=True,
    )
    assert located.returncode == 0, located.stderr
    assert "linearized darks: 1" in located.stdout and "nircam/darks/linearized/B5/" in located.stdout
    assert "gridded PSF libraries: 1" in located.stdout and "_nrcb5_" in located.stdout
    assert "CRs_MCD1.7_SUNMIN_00_IPC_NIRCam_B5.fits" in located.stdout
