"""Tarballs: unpacked into the layout, unsafe ones refused with nothing written outside."""

from __future__ import annotations

import tarfile

import pytest

from collections_for_tests import FGS_CR, library_fits, make_collection, tarball
from mirage_data.download.api import DownloadFailed, download_reffiles
from mirage_data.install.unpack import UnsafeArchive, member_destination
from support.faulty_server import FaultyServer


def fetch_cr(tmp_path, data: bytes, **kw):
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_CR: data})
    with FaultyServer(root) as server:
        return download_reffiles(
            tmp_path / "dest", "fgs", skip_darks=True, mirror=server.url, catalog=catalog, quiet=True, **kw
        )


def test_archive_unpacks_into_layout_without_leftovers(tmp_path):
    members = {
        "mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER1.fits": library_fits(1),
        "mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER2.fits": library_fits(2),
    }
    fetch_cr(tmp_path, tarball(members))
    mirage_data = tmp_path / "dest" / "mirage_data"
    for name, data in members.items():
        assert (mirage_data / name.removeprefix("mirage_data/")).read_bytes() == data
    # No archive copy, no partial, no temporary file left anywhere.
    leftovers = [
        p
        for p in mirage_data.rglob("*")
        if p.is_file() and p.name not in ("inventory.json", "lock", "catalog.tsv", "source.json")
    ]
    assert sorted(p.name for p in leftovers) == sorted(n.rsplit("/", 1)[1] for n in members)


def test_keep_archives(tmp_path):
    data = tarball({"mirage_data/fgs/cosmic_ray_library/CRs.fits": library_fits(3)})
    fetch_cr(tmp_path, data, keep_archives=True)
    kept = tmp_path / "dest" / "mirage_data" / ".mirage-data" / "archives" / FGS_CR
    assert kept.read_bytes() == data


def test_members_without_prefix_go_to_the_groups_folder(tmp_path):
    fetch_cr(tmp_path, tarball({"./CRs_MCD1.7_FLARES_01_IPC_FGS_GUIDER1.fits": library_fits(4)}))
    assert (tmp_path / "dest/mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_FLARES_01_IPC_FGS_GUIDER1.fits").exists()


def _info(name, type_=tarfile.REGTYPE, linkname="", size=0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = type_, linkname, size
    return info


@pytest.mark.parametrize(
    "bad, why",
    [
        (_info("mirage_data/fgs/../../../escaped.txt", size=3), "'..'"),
        (_info("/tmp/escaped-absolute.txt", size=3), "absolute"),
        (_info("mirage_data/fgs/cosmic_ray_library/passwd", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_info("mirage_data/fgs/cosmic_ray_library/up", tarfile.SYMTYPE, "../../../../x"), "link"),
        (_info("mirage_data/fgs/cosmic_ray_library/hard", tarfile.LNKTYPE, "/etc/passwd"), "link"),
        (_info("mirage_data/fgs/cosmic_ray_library/dev", tarfile.CHRTYPE), "device"),
        (_info("mirage_data/fgs/cosmic_ray_library/fifo", tarfile.FIFOTYPE), "FIFO"),
        (_info("mirage_data/.mirage-data/inventory.json", size=3), "no place"),
    ],
    ids=["dotdot", "absolute", "symlink-abs", "symlink-up", "hardlink", "device", "fifo", "state"],
)
def test_malicious_archive_is_refused_and_nothing_written(tmp_path, bad, why):
    good = {"mirage_data/fgs/cosmic_ray_library/CRs_ok.fits": library_fits(5)}
    data = tarball(good, extra=[bad])
    with pytest.raises(DownloadFailed, match="unsafe archive refused") as info:
        fetch_cr(tmp_path, data)
    assert why in str(info.value)
    mirage_data = tmp_path / "dest" / "mirage_data"
    # Nothing from the archive was installed, not even its good member, and nothing escaped.
    assert not (mirage_data / "fgs").exists() or not any((mirage_data / "fgs").rglob("*"))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest" / "escaped.txt").exists()
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*"))
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))
    assert not (mirage_data / ".mirage-data" / "partial" / (FGS_CR + ".part")).exists()


def test_member_destination_rules():
    assert member_destination("mirage_data/nircam/x.fits", "y") == "nircam/x.fits"
    with pytest.raises(UnsafeArchive):
        member_destination("C:/windows/x", "y")
    with pytest.raises(UnsafeArchive):
        member_destination("mirage_data", "y")
