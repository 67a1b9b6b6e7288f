"""Adopting trees mirage-data did not make: Mirage's own downloader's layout, copies, lost state.

A "Mirage tree" here is what Mirage 2.5's downloader leaves (FORMATS.md section 2): each dark's
``.fits.gz`` in its folder with the decompressed ``.fits`` beside it, tarballs in the download
folder (the one holding ``mirage_data``) and unpacked into the layout. The collection is served
on loopback by the plain static server; a handler hook counts the GET requests per file.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from collections_for_tests import FGS_CR, FGS_RAW, REAL, dark_bytes, gz, library_fits, make_collection, tarball
from mirage_data import download_reffiles
from mirage_data.install.inventory import ADOPTED, DOWNLOADED, Inventory
from mirage_data.testing.server import CollectionServer, StaticFileHandler

CR_MEMBERS = {f"CRs_MCD1.7_SUNMIN_{i:02d}_IPC_FGS_GUIDER2.fits": library_fits(seed=i) for i in range(2)}


class CountingHandler(StaticFileHandler):
    """Counts GET requests per served path (``server.gets``)."""

    def before_response(self, relpath: str, head: bool) -> bool:
        if not head:
            self.server.owner.gets[relpath] += 1
        return False


class CountingServer(CollectionServer):
    def __init__(self, root) -> None:
        super().__init__(root, handler_class=CountingHandler)
        self.gets: Counter[str] = Counter()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(root, catalog, darks' decompressed bytes) of four GUIDER2 raw darks and the FGS
    cosmic-ray tarball."""
    root = tmp_path_factory.mktemp("adopt") / "collection"
    plain = {rp: dark_bytes(60_000, seed=i) for i, rp in enumerate(FGS_RAW[:4])}
    files = {rp: gz(data) for rp, data in plain.items()}
    files[FGS_CR] = tarball(CR_MEMBERS)
    return root, make_collection(root, files), plain


def mirage_tree(download_path: Path, root: Path, plain: dict[str, bytes]) -> Path:
    """What Mirage's downloader leaves after downloading the collection into *download_path*:
    dark 0 complete (.fits.gz + .fits), dark 1 only its .fits.gz (unzip never ran), dark 2 a
    truncated .fits (unzip interrupted) beside its .fits.gz, dark 3 nothing; the cosmic-ray
    tarball in the download folder and unpacked."""
    md = download_path / "mirage_data"
    for i, rp in enumerate(FGS_RAW[:3]):
        target = md / rp
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((root / rp).read_bytes())
        if i == 0:
            target.with_suffix("").write_bytes(plain[rp])
        if i == 2:
            target.with_suffix("").write_bytes(plain[rp][: len(plain[rp]) // 2])
    (download_path / Path(FGS_CR).name).write_bytes((root / FGS_CR).read_bytes())
    for name, data in CR_MEMBERS.items():
        (md / "fgs/cosmic_ray_library").mkdir(parents=True, exist_ok=True)
        (md / "fgs/cosmic_ray_library" / name).write_bytes(data)
    return md


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(dest, server, catalog, **kw):
    return download_reffiles(
        dest, "fgs", dark_type="raw", skip_psfs=True, mirror=server.url, catalog=catalog, quiet=True, **kw
    )


def cli(*args, check_code=None):
    out = subprocess.run([sys.executable, "-m", "mirage_data", *args], capture_output=True, text=True)
    assert "Traceback" not in out.stderr, out.stderr
    if check_code is not None:
        assert out.returncode == check_code, (out.stdout, out.stderr)
    return out


def test_download_into_a_mirage_tree_fetches_only_what_is_missing(collection, tmp_path):
    root, catalog, plain = collection
    md = mirage_tree(tmp_path, root, plain)
    with CountingServer(root) as server:
        result = fetch(tmp_path, server, catalog)
        # Only the dark that is nowhere in the tree is fetched; dark 1 and the truncated dark 2
        # are decompressed from their leftover .fits.gz, dark 0 and the tarball's files adopted.
        assert dict(server.gets) == {FGS_RAW[3]: 1}
    inventory = Inventory.load(md)
    origins = {rp: inventory.get(rp).origin for rp in [*FGS_RAW[:4], FGS_CR]}
    assert origins == {
        FGS_RAW[0]: ADOPTED,
        FGS_RAW[1]: ADOPTED,
        FGS_RAW[2]: ADOPTED,
        FGS_RAW[3]: DOWNLOADED,
        FGS_CR: ADOPTED,
    }
    for rp in FGS_RAW[:4]:
        assert (md / rp).with_suffix("").read_bytes() == plain[rp]
    assert result.report is not None and not result.report.failed
    # A second run fetches nothing and says all is installed.
    with CountingServer(root) as server:
        again = fetch(tmp_path, server, catalog)
        assert not server.gets and again.report is None


def test_status_shows_untracked_then_adopted_and_reclaim_frees_the_leftovers(collection, tmp_path):
    root, catalog, plain = collection
    md = mirage_tree(tmp_path, root, plain)
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    before = sorted(p for p in tmp_path.rglob("*"))
    status = cli("status", str(md), check_code=0)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # status wrote nothing
    assert f"untracked: {FGS_RAW[0]}" in status.stdout and f"untracked: {FGS_CR}" in status.stdout
    assert "mirage-data adopt" in status.stdout

    adopt = cli("adopt", str(md), "--catalog", str(catalog_file), check_code=0)
    # Dark 0 and the tarball's files are adopted as they are; dark 1 (no .fits) and dark 2
    # (truncated .fits) are decompressed from their leftover .fits.gz.
    assert "2 files adopted, 2 unpacked" in adopt.stdout
    status = cli("status", str(md), check_code=0)
    assert "untracked:" not in status.stdout
    rows = {line.split()[1]: line.split()[-5:] for line in status.stdout.splitlines() if line.startswith("  fgs")}
    # installed, adopted, modified, untracked, missing
    assert rows == {"raw": ["3", "3", "0", "0", "1"], "cosmic-ray": ["1", "1", "0", "0", "0"]}, status.stdout

    leftovers = [md / rp for rp in FGS_RAW[:3]] + [tmp_path / Path(FGS_CR).name]
    assert all(p.exists() for p in leftovers)
    reclaim = cli("adopt", str(md), "--catalog", str(catalog_file), "--reclaim", check_code=0)
    assert not any(p.exists() for p in leftovers), reclaim.stdout
    assert "reclaimed" in reclaim.stdout and "in 4 leftover copies" in reclaim.stdout
    for rp in FGS_RAW[:3]:
        assert (md / rp).with_suffix("").read_bytes() == plain[rp]
    cli("verify", str(md), check_code=0)


def test_reclaim_keeps_a_leftover_whose_installed_file_is_damaged(collection, tmp_path):
    root, catalog, plain = collection
    md = mirage_tree(tmp_path, root, plain)
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    cli("adopt", str(md), "--catalog", str(catalog_file), check_code=0)
    damaged = (md / FGS_RAW[0]).with_suffix("")
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes: only a re-hash sees it
    damaged.write_bytes(bytes(data))
    cli("adopt", str(md), "--catalog", str(catalog_file), "--reclaim", check_code=0)
    assert (md / FGS_RAW[0]).exists()  # the only good copy stays
    assert not (md / FGS_RAW[1]).exists()
    # repair restores the adopted dark from its leftover copy: the mirror refuses connections.
    out = cli("repair", str(md), "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert damaged.read_bytes() == plain[FGS_RAW[0]]


def test_a_wrong_file_in_the_tree_is_not_adopted(collection, tmp_path):
    root, catalog, plain = collection
    md = tmp_path / "mirage_data"
    wrong = (md / FGS_RAW[0]).with_suffix("")
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"<html><body>Not found</body></html>" + b" " * 2845)
    bad_gz = md / FGS_RAW[1]
    bad_gz.write_bytes(gzip.compress(plain[FGS_RAW[1]])[:-20])  # truncated leftover
    with CountingServer(root) as server:
        fetch(tmp_path, server, catalog)
        assert server.gets[FGS_RAW[0]] == 1 and server.gets[FGS_RAW[1]] == 1
    assert wrong.read_bytes() == plain[FGS_RAW[0]]
    assert Inventory.load(md).get(FGS_RAW[0]).origin == DOWNLOADED


def test_adopted_files_are_hashed_not_trusted(collection, tmp_path):
    root, catalog, plain = collection
    md = mirage_tree(tmp_path, root, plain)
    with CountingServer(root) as server:
        fetch(tmp_path, server, catalog)
    record = Inventory.load(md).get(FGS_RAW[0])
    (installed,) = record.files
    assert installed.sha256 == hashlib.sha256(plain[FGS_RAW[0]]).hexdigest()
    assert record.source_sha256 == hashlib.sha256((root / FGS_RAW[0]).read_bytes()).hexdigest()
    assert REAL.get(FGS_RAW[0]).install_path == installed.path


def mirage_downloader_tree(download_path: Path, root: Path, entries) -> Path:
    """Do what Mirage 2.5's downloader does for *entries*: tarballs saved in the download folder
    and unpacked there (their members begin ``mirage_data/``), darks' ``.fits.gz`` moved into
    their folder and decompressed beside it."""
    md = download_path / "mirage_data"
    for entry in entries:
        if entry.is_archive:
            copy = download_path / entry.name
            shutil.copyfile(root / entry.relative_path, copy)
            with tarfile.open(copy, "r:gz") as tar:
                tar.extractall(download_path, filter="data")
        else:
            copy = md / entry.relative_path
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / entry.relative_path, copy)
            with gzip.open(copy) as src, open(copy.with_suffix(""), "wb") as out:
                shutil.copyfileobj(src, out)
    return md


def test_a_tree_made_by_mirages_downloader_is_adopted_with_nothing_fetched(sample_collection, tmp_path):
    root, catalog = sample_collection
    selection = dict(instrument="all", dark_type="linearized", single_dark=True)
    from mirage_data.collection.selection import Selection

    entries = Selection(**selection).files(catalog)
    assert sum(e.is_archive for e in entries) == 13  # every tarball, the four sharing a folder too
    md = mirage_downloader_tree(tmp_path, root, entries)
    with CountingServer(root) as server:
        download_reffiles(tmp_path, mirror=server.url, catalog=catalog, quiet=True, **selection)
        assert not server.gets, dict(server.gets)
    inventory = Inventory.load(md)
    assert {inventory.get(e.relative_path).origin for e in entries} == {ADOPTED}
    from_tarballs = {e.relative_path: sorted(f.path for f in inventory.get(e.relative_path).files) for e in entries}
    cli("verify", str(md), check_code=0)

    # The same tree copied without its leftovers and without mirage-data's state (as a
    # colleague's copy): the files are found by folder, the shared PSF folder by detector names.
    cli("adopt", str(md), "--reclaim", check_code=0)
    assert not list(tmp_path.glob("*.tar.gz")) and not list(md.rglob("*.fits.gz"))
    shutil.rmtree(md / ".mirage-data")
    with CountingServer(root) as server:
        download_reffiles(tmp_path, mirror=server.url, catalog=catalog, quiet=True, **selection)
        assert not server.gets, dict(server.gets)
    inventory = Inventory.load(md)
    assert {e.relative_path: sorted(f.path for f in inventory.get(e.relative_path).files) for e in entries} == (
        from_tarballs
    )
    cli("verify", str(md), check_code=0)
