"""Pinning: ``mirage-data catalog DIR -o pinned.tsv`` writes a catalog with exact sizes and sha256
from a verified install; other installs given it with ``--catalog`` refuse anything that differs
(issue 8, section 1). Real FITS files over loopback HTTP, the real CLI."""

from __future__ import annotations

import gzip
import hashlib

from click.testing import CliRunner

from fits_files import FGS_CR, G1_LIN, G1_RAW, cr_file, dark, gz, serve, tarball
from mirage_data.cli import main
from mirage_data.collection.catalog import load_catalog
from mirage_data.install.content import installed_digest
from mirage_data.install.inventory import Inventory
from mirage_data.testing.server import CollectionServer

CR_MEMBER = "mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER1.fits"


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def download(dest, root, catalog_path, *extra):
    with CollectionServer(root) as server:
        return cli("download", dest, "-i", "fgs", "--dark-type", "both", "--mirror", server.url,
                   "--catalog", catalog_path, "-q", *extra)  # fmt: skip


def site(tmp_path):
    """A collection (GUIDER1 raw + linearized darks, the FGS cosmic-ray tarball) with the real
    collection's unpinned catalog, downloaded once; returns (remote folder, its files, catalog path)."""
    files = {
        G1_RAW: gz(dark("raw")),
        G1_LIN: gz(dark("linearized")),
        FGS_CR: tarball([(CR_MEMBER, cr_file())]),
    }
    root = tmp_path / "remote"
    catalog = serve(root, files)
    catalog_path = tmp_path / "unpinned.tsv"
    catalog.write(catalog_path)
    result = download(tmp_path / "first", root, catalog_path)
    assert result.exit_code == 0, result.output
    return root, files, catalog_path


def test_catalog_pins_exact_sizes_and_hashes_of_a_verified_install(tmp_path):
    root, files, _ = site(tmp_path)
    pinned_path = tmp_path / "pinned.tsv"
    result = cli("catalog", tmp_path / "first", "-o", pinned_path, "-q")
    assert result.exit_code == 0, result.output
    assert "3 pinned" in result.output
    pinned = load_catalog(pinned_path)
    for entry, data in files.items():
        pin = pinned.get(entry.relative_path)
        assert (pin.size, pin.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    dark_pin = pinned.get(G1_RAW.relative_path)
    assert dark_pin.installed_sha256 == hashlib.sha256(gzip.decompress(files[G1_RAW])).hexdigest()
    record = Inventory.load(tmp_path / "first" / "mirage_data").get(FGS_CR.relative_path)
    assert pinned.get(FGS_CR.relative_path).installed_sha256 == installed_digest(FGS_CR, record.files)


def test_a_pinned_catalog_refuses_what_an_unpinned_one_accepts(tmp_path):
    root, files, unpinned = site(tmp_path)
    pinned = tmp_path / "pinned.tsv"
    assert cli("catalog", tmp_path / "first", "-o", pinned, "-q").exit_code == 0
    # The server now sends another, equally valid GUIDER1 dark.
    (root / G1_RAW.relative_path).write_bytes(gz(dark("raw", ngroups=3)))
    refused = download(tmp_path / "second", root, pinned)
    assert refused.exit_code == 1, refused.output
    assert G1_RAW.relative_path in refused.output and "where the catalog says" in refused.output
    assert not (tmp_path / "second/mirage_data" / G1_RAW.install_path).exists()
    # The other files match their pins and install.
    assert (tmp_path / "second/mirage_data" / G1_LIN.install_path).is_file()
    # Without the pins the same server is believed (the content checks cannot tell).
    accepted = download(tmp_path / "third", root, unpinned)
    assert accepted.exit_code == 0, accepted.output


def test_a_link_install_pins_and_is_checked_by_its_installed_files(tmp_path):
    """A --link install never reads the .gz: it pins only the installed file's hash, and a
    pinned catalog refuses a linked file that differs from it."""
    good = dark("raw")
    mirror = tmp_path / "mirror"
    catalog = serve(mirror, {G1_RAW: gz(good)})
    (mirror / G1_RAW.install_path).write_bytes(good)
    catalog_path = tmp_path / "unpinned.tsv"
    catalog.write(catalog_path)
    args = ("-i", "fgs", "--dark-type", "raw", "--mirror", mirror, "--catalog")
    result = cli("download", tmp_path / "linked", *args, catalog_path, "--link", "-q")
    assert result.exit_code == 0, result.output
    assert cli("catalog", tmp_path / "linked", "-o", tmp_path / "pinned.tsv", "-q").exit_code == 0
    pin = load_catalog(tmp_path / "pinned.tsv").get(G1_RAW.relative_path)
    assert (pin.size, pin.sha256) == (None, None)  # never computed, never recorded
    assert pin.installed_sha256 == hashlib.sha256(good).hexdigest()

    (mirror / G1_RAW.install_path).write_bytes(dark("raw", ngroups=3))  # valid, but not the pinned one
    result = cli("download", tmp_path / "other", *args, tmp_path / "pinned.tsv", "--link", "-q")
    assert result.exit_code == 1 and "where the pinned catalog says" in result.output, result.output
    assert not (tmp_path / "other/mirage_data" / G1_RAW.install_path).exists()
    # Copying the .gz gives the pinned bytes: accepted.
    result = cli("download", tmp_path / "copied", *args, tmp_path / "pinned.tsv", "-q")
    assert result.exit_code == 0, result.output


def test_an_install_that_does_not_verify_is_not_pinned(tmp_path):
    site(tmp_path)
    installed = tmp_path / "first/mirage_data" / G1_RAW.install_path
    installed.write_bytes(b"x" + installed.read_bytes()[1:])
    result = cli("catalog", tmp_path / "first", "-o", tmp_path / "pinned.tsv", "-q")
    assert result.exit_code == 2 and "do not verify" in result.output and "repair" in result.output
    assert not (tmp_path / "pinned.tsv").exists()
