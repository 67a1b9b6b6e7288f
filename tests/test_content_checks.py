"""Every file is checked for what it is before it is installed (issue 8, section 1).

A hostile or broken server sends intact bytes of the wrong thing: an HTML page, another
guider's dark, a gzip bomb, a tarball that plants files elsewhere. Each case is served from a
folder by the plain loopback server, over real HTTP, as real FITS files written with astropy,
and must be refused with a message saying what arrived, leaving nothing in the layout.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from astropy.io import fits
from isal import igzip, isal_zlib

from fits_files import (
    A5_RAW,
    FGS_CR,
    G1_LIN,
    G1_RAW,
    PSF_12,
    PSF_345,
    PSF_FOLDER,
    REAL,
    cr_file,
    dark,
    fetch,
    fits_bytes,
    gz,
    layout,
    psf_file,
    refused,
    tarball,
)
from mirage_data.download.api import DownloadFailed
from mirage_data.install.content import MIN_ALLOWANCE, WrongContent, check_file, check_for
from mirage_data.install.unpack import CHUNK, GunzipReader

# ---------------------------------------------------------------------------- darks


def test_real_darks_of_every_kind_install(tmp_path):
    """Both detector spellings, float raw data and an extra HDU are all fine."""
    files = {
        G1_RAW: gz(dark("raw", extra=True)),
        G1_LIN: gz(dark("linearized")),
        A5_RAW: gz(dark("raw", instrume="NIRCAM", detector="NRCA5", raw_dtype=np.float32)),
    }
    outcome, mirage_data = fetch(tmp_path, files)
    assert not isinstance(outcome, Exception), outcome
    assert layout(mirage_data) == {e.install_path for e in files}


@pytest.mark.parametrize("compressed", [True, False], ids=["gzipped", "plain"])
def test_an_html_page_in_a_darks_place_is_refused(tmp_path, compressed):
    page = b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body>Back soon</body></html>\n" * 50
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(page) if compressed else page})
    refused(outcome, mirage_data, "the server sent an HTML page", G1_RAW.relative_path)
    assert layout(mirage_data) == set()
    assert not list((mirage_data / ".mirage-data").rglob("*.part"))


def test_an_html_page_in_a_tarballs_place_is_refused(tmp_path):
    page = b"<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"
    outcome, mirage_data = fetch(tmp_path, {FGS_CR: page}, skip_darks=True)
    refused(outcome, mirage_data, "the server sent an HTML page", FGS_CR.relative_path)
    assert layout(mirage_data) == set()


def test_another_guiders_dark_is_refused(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(dark("raw", detector="GUIDER2"))})
    refused(outcome, mirage_data, "DETECTOR is GUIDER2, expected GUIDER1")
    assert layout(mirage_data) == set()


def test_another_instruments_dark_is_refused(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {A5_RAW: gz(dark("raw", instrume="NIRISS", detector="NIS"))})
    refused(outcome, mirage_data, "INSTRUME is NIRISS, expected NIRCAM")


def test_a_raw_dark_in_a_linearized_darks_place_is_refused(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {G1_LIN: gz(dark("raw"))})
    refused(outcome, mirage_data, "no SBANDREFPIX", "not a linearized dark")
    assert layout(mirage_data) == set()


def test_a_dark_shorter_than_its_headers_is_refused(tmp_path):
    data = dark("raw")
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(data[: len(data) - 2880])})
    refused(outcome, mirage_data, "truncated", f"declare {len(data)} bytes")
    assert layout(mirage_data) == set()


def test_a_dark_without_sci_is_refused(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"], primary.header["DETECTOR"] = "FGS", "GUIDER1"
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: gz(fits_bytes([primary]))})
    refused(outcome, mirage_data, "has no SCI extension")


# ---------------------------------------------------------------------------- bombs


def zeros_gz(n_bytes: int, head: bytes = b"") -> bytes:
    """*head* followed by *n_bytes* zero bytes, gzipped as a stream (quick: zeros compress 1000:1)."""
    c = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)
    parts = [c.compress(head)]
    block = bytes(8 << 20)
    for _ in range(n_bytes // len(block)):
        parts.append(c.compress(block))
    parts.append(c.flush())
    return b"".join(parts)


def test_a_gzip_bomb_of_zeros_in_a_darks_place_is_refused_at_its_first_block(tmp_path):
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: zeros_gz(400 << 20)})
    refused(outcome, mirage_data, "the file is all zero bytes")
    assert layout(mirage_data) == set()


def test_a_bomb_after_a_valid_dark_stops_where_its_headers_end(tmp_path):
    """A valid dark followed by 200 MB of zeros: refused at the first block its headers do not
    account for, not after decompressing the rest."""
    good = dark("raw")
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: zeros_gz(200 << 20, head=good)})
    refused(outcome, mirage_data, "not a FITS extension", f"after {len(good)} bytes")
    assert layout(mirage_data) == set()


def test_a_dark_whose_headers_promise_too_much_is_refused_at_its_header(tmp_path):
    """Headers declaring 6 GiB in a file of a few kB: refused as soon as the header is read."""
    header = fits.Header()
    header["XTENSION"], header["BITPIX"], header["NAXIS"] = "IMAGE", 16, 4
    for i, n in enumerate((2048, 2048, 768, 1), start=1):
        header[f"NAXIS{i}"] = n
    header["PCOUNT"], header["GCOUNT"], header["EXTNAME"] = 0, 1, "SCI"
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"], primary.header["DETECTOR"] = "FGS", "GUIDER1"
    head = fits_bytes([primary]) + header.tostring().encode()
    outcome, mirage_data = fetch(tmp_path, {G1_RAW: zeros_gz(16 << 20, head=head)})
    refused(outcome, mirage_data, "decompression bomb", "declare 64424")
    assert layout(mirage_data) == set()


def bomb_tarball(n_bytes: int) -> bytes:
    """A cosmic-ray tarball with one real library file and a member of *n_bytes* zeros."""
    out = io.BytesIO()
    with igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=2, mtime=0) as gzf:
        with tarfile.open(fileobj=gzf, mode="w") as tar:
            ok = cr_file()
            info = tarfile.TarInfo("mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER1.fits")
            info.size = len(ok)
            tar.addfile(info, io.BytesIO(ok))
            info = tarfile.TarInfo("mirage_data/fgs/cosmic_ray_library/notes.txt")
            info.size = n_bytes

            class Zeros(io.RawIOBase):
                def readinto(self, b):
                    b[:] = bytes(len(b))
                    return len(b)

            tar.addfile(info, Zeros())
    return out.getvalue()


def test_a_gzip_bomb_archive_is_refused_and_decompression_stops_at_the_bound(tmp_path):
    data = bomb_tarball(300 << 20)  # 300 MB of zeros in about 300 kB
    assert len(data) < 1 << 20
    outcome, mirage_data = fetch(tmp_path, {FGS_CR: data}, skip_darks=True)
    refused(outcome, mirage_data, "decompression bomb")
    assert layout(mirage_data) == set()
    # The bound itself: decompression stops within one read of the allowance.
    reader = GunzipReader(io.BytesIO(data), MIN_ALLOWANCE)
    with pytest.raises(WrongContent, match="stopped after"):
        while reader.read(CHUNK):
            pass
    assert MIN_ALLOWANCE < reader.output <= MIN_ALLOWANCE + CHUNK


# ---------------------------------------------------------------------------- archives


def cr_members(**extra: bytes) -> list[tuple[str, bytes]]:
    members = [("mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER1.fits", cr_file())]
    return members + list(extra.items())


def test_an_archive_may_not_plant_files_outside_its_groups_folder(tmp_path):
    members = cr_members() + [("mirage_data/nircam/darks/linearized/A1/planted.fits", dark("linearized"))]
    outcome, mirage_data = fetch(tmp_path, {FGS_CR: tarball(members)}, skip_darks=True)
    refused(outcome, mirage_data, "nircam/darks/linearized/A1/planted.fits", "outside fgs/cosmic_ray_library/")
    assert layout(mirage_data) == set()


def test_an_html_member_in_a_library_is_refused(tmp_path):
    members = cr_members() + [
        (
            "mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_01_IPC_FGS_GUIDER1.fits",
            b"<html><body>404</body></html>",
        )
    ]
    outcome, mirage_data = fetch(tmp_path, {FGS_CR: tarball(members)}, skip_darks=True)
    refused(outcome, mirage_data, "the server sent an HTML page")
    assert layout(mirage_data) == set()


def test_a_psf_library_without_the_headers_mirage_reads_is_refused(tmp_path):
    bare = fits_bytes([fits.PrimaryHDU(np.zeros((1, 8, 8), np.float32))])
    members = [(f"{PSF_FOLDER}/nircam_nrca1_f200w_clear_fovp8_samp2_npsf1_requirements_realization0.fits", bare)]
    outcome, mirage_data = fetch(tmp_path, {PSF_12: tarball(members)})
    refused(outcome, mirage_data, "lacks INSTRUME, DETECTOR, FILTER, OPD_FILE, OVERSAMP, DET_YX0")


def test_psf_wings_are_checked_where_mirage_reads_them(tmp_path):
    """Wings: the image and the confirming header are in extension DET_DIST (DET_NAME stands in
    for DETECTOR, as in Mirage); a wing file without DET_DIST is refused."""
    wings = next(e for e in REAL if e.group == "psf_wings")
    name = f"{PSF_FOLDER}/psf_wings/nircam_nrca1_f200w_clear_fovp101_samp1_predicted_realization0.fits"
    header = fits.Header()
    for key, value in {"INSTRUME": "NIRCAM", "DET_NAME": "NRCA1", "FILTER": "F200W", "OPD_FILE": "x.fits"}.items():
        header[key] = value
    good = fits_bytes([fits.PrimaryHDU(), fits.ImageHDU(np.ones((9, 9), np.float32), header=header, name="DET_DIST")])
    bad = fits_bytes([fits.PrimaryHDU(np.ones((9, 9), np.float32), header=header)])
    outcome, mirage_data = fetch(tmp_path, {wings: tarball([(name, good)])}, dest="good")
    assert not isinstance(outcome, Exception), outcome
    outcome, mirage_data = fetch(tmp_path, {wings: tarball([(name, bad)])}, dest="bad")
    refused(outcome, mirage_data, "has no 2-D DET_DIST extension")
    assert layout(mirage_data) == set()


def test_an_archive_is_installed_whole_or_not_at_all(tmp_path):
    """A file ``x`` followed by ``x/y``: nothing of the archive reaches the layout."""
    folder = "mirage_data/fgs/cosmic_ray_library"
    members = cr_members() + [(f"{folder}/x", b"plain text"), (f"{folder}/x/y", b"more text")]
    outcome, mirage_data = fetch(tmp_path, {FGS_CR: tarball(members)}, skip_darks=True)
    refused(outcome, mirage_data, "both a file and a folder")
    assert layout(mirage_data) == set()


def test_a_commit_that_fails_half_way_puts_everything_back(tmp_path):
    """The second defence of whole-or-nothing: a move that fails after others succeeded (here
    a staged file removed behind the installer's back) restores what the first ones replaced."""
    from mirage_data.install.unpack import StagedInstall

    mirage_data = tmp_path / "mirage_data"
    first = mirage_data / "fgs/cosmic_ray_library/a.fits"
    first.parent.mkdir(parents=True)
    first.write_bytes(b"installed before")
    staging = StagedInstall(mirage_data, FGS_CR.relative_path)
    staging.add_stream(io.BytesIO(cr_file(1)), "fgs/cosmic_ray_library/a.fits")
    staging.add_stream(io.BytesIO(cr_file(2)), "fgs/cosmic_ray_library/b.fits")
    staging.files[1][0].unlink()
    with pytest.raises(FileNotFoundError):
        staging.commit()
    assert first.read_bytes() == b"installed before"
    assert not (mirage_data / "fgs/cosmic_ray_library/b.fits").exists()
    assert not staging.root.exists()


def test_psf_tarballs_may_share_identical_files_but_not_different_ones(tmp_path):
    shared = f"{PSF_FOLDER}/nircam_nrca1_f200w_clear_fovp8_samp2_npsf1_requirements_realization0.fits"
    own = f"{PSF_FOLDER}/nircam_nrca3_f200w_clear_fovp8_samp2_npsf1_requirements_realization0.fits"
    same = {PSF_12: tarball([(shared, psf_file())]), PSF_345: tarball([(shared, psf_file()), (own, psf_file("NRCA3"))])}
    outcome, mirage_data = fetch(tmp_path, same, dest="same")
    assert not isinstance(outcome, Exception), outcome
    from mirage_data.install.upkeep import verify_install

    assert verify_install(mirage_data) == {}

    different = {
        PSF_12: tarball([(shared, psf_file(seed=1))]),
        PSF_345: tarball([(shared, psf_file(seed=2)), (own, psf_file("NRCA3"))]),
    }
    outcome, mirage_data = fetch(tmp_path, different, dest="different")
    message = refused(outcome, mirage_data, "would replace a different file installed from")
    assert "1 of 2 files failed" in message
    assert verify_install(mirage_data) == {}


# ---------------------------------------------------------------------------- files on disk


def test_check_file_reads_headers_and_checks_the_size(tmp_path):
    path = tmp_path / "d.fits"
    path.write_bytes(dark("raw"))
    check_file(path, check_for(G1_RAW))
    path.write_bytes(dark("raw") + bytes(2880))
    with pytest.raises(WrongContent, match="not a FITS extension"):
        check_file(path, check_for(G1_RAW))
    path.write_bytes(dark("raw", detector="GUIDER2"))
    with pytest.raises(WrongContent, match="DETECTOR is GUIDER2, expected GUIDER1"):
        check_file(path, check_for(G1_RAW))
    malformed = dark("raw").replace(b"NAXIS1  =                   32", b"NAXIS1  =                 'ab'", 1)
    path.write_bytes(malformed)
    with pytest.raises(WrongContent, match="malformed NAXIS"):
        check_file(path, check_for(G1_RAW))


def test_inventory_records_only_checked_files(tmp_path):
    outcome, mirage_data = fetch(
        tmp_path, {G1_RAW: gz(dark("raw", detector="GUIDER2")), G1_LIN: gz(dark("linearized"))}
    )
    assert isinstance(outcome, DownloadFailed)
    records = json.loads((mirage_data / ".mirage-data" / "inventory.json").read_text())["files"]
    assert list(records) == [G1_LIN.relative_path]
