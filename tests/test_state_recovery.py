"""Crashes leave nothing behind, and mirage-data's own state can always be rebuilt.

Real processes killed with SIGKILL, real damaged inventory files, a real small tmpfs for the
free-space check; the collection is served on loopback by the plain static server, and a
handler hook counts GET requests per file (a rebuilt inventory must cost no download).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collections_for_tests import FGS_RAW, dark_bytes, gz, make_collection
from mirage_data.install.inventory import DOWNLOADED, MADE, Inventory, sha256_of
from mirage_data.install.state import stale_leftovers, state_dir, tmp_dir
from mirage_data.testing.server import CollectionServer
from test_adopt import CountingServer, cli, fetch

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery") / "collection"
    plain = {rp: dark_bytes(400_000, seed=i) for i, rp in enumerate(FGS_RAW[:3])}
    return root, make_collection(root, {rp: gz(d) for rp, d in plain.items()}), plain


def staging_leftovers(md: Path) -> list[Path]:
    folder = state_dir(md) / "tmp"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- kill -9


def test_staging_of_a_killed_run_is_removed_by_the_next_run(collection, tmp_path):
    root, catalog, plain = collection
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    md = tmp_path / "mirage_data"
    # Slow enough that the run is still staging its files when it is killed.
    with CollectionServer(root, rate_limit=100_000) as server:
        args = [sys.executable, "-m", "mirage_data", "download", str(tmp_path), "-i", "fgs", "--dark-type", "raw"]
        args += ["--skip-psfs", "-q", "--mirror", server.url, "--catalog", str(catalog_file)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(2000):  # wait for the staging folders to appear (bounded count, not a time)
                if len([p for p in staging_leftovers(md) if p.is_dir() and any(p.iterdir())]) >= 2:
                    break
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
    left = staging_leftovers(md)
    assert left, "the killed run left no staging: the test did not test anything"
    assert all(p in {q for q, _ in stale_leftovers(md)} for p in left)

    # A live writer's temporary must survive the clean-up.
    live = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from mirage_data.install.unpack import StagedInstall; import sys; "
            f"s = StagedInstall(__import__('pathlib').Path({str(md)!r}), 'live'); print(s.root, flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    live_root = Path(live.stdout.readline().strip())
    try:
        with CountingServer(root) as server:
            result = fetch(tmp_path, server, catalog)
        assert not result.report.failed
        assert staging_leftovers(md) == [live_root]
        for rp, data in plain.items():
            assert (md / rp).with_suffix("").read_bytes() == data
    finally:
        live.stdin.close()
        live.wait()


def test_temporaries_of_dead_writers_in_the_layout_are_removed(collection, tmp_path):
    root, catalog, plain = collection
    md = tmp_path / "mirage_data"
    folder = md / "fgs/darks/raw"
    folder.mkdir(parents=True)
    pid = dead_pid()
    host = stale_host()
    dead = folder / f".x.fits.{host}.{pid}.0a1b2c3d.mdtmp"
    dead.write_bytes(b"\0" * 5000)
    other_host = folder / f".x.fits.otherhost.{pid}.0a1b2c3d.mdtmp"
    other_host.write_bytes(b"")
    old_style = tmp_dir(md) / f"some_file.fits.gz.{pid}.staging"
    old_style.mkdir()
    (old_style / "00000").write_bytes(b"\0" * 5000)
    with CountingServer(root) as server:
        fetch(tmp_path, server, catalog)
    assert not dead.exists() and not old_style.exists()
    assert other_host.exists()  # only its own host can tell whether that writer still runs


def stale_host() -> str:
    from mirage_data.io.atomic import parse_temporary_name, temporary_path

    return parse_temporary_name(temporary_path("x").name)[0]


@root_only
def test_free_space_check_counts_what_the_clean_up_gives_back(collection, tmp_path):
    root, catalog, plain = collection
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        from mirage_data.collection.selection import Selection
        from mirage_data.download.plan import make_plan

        plan = make_plan(mount, Selection(instrument="fgs", dark_type="raw", skip_psfs=True), catalog)
        needed = plan.space_needed
        md = mount / "mirage_data"
        stale = tmp_dir(md) / f".dead.staging.{stale_host()}.{dead_pid()}.0a1b2c3d.mdtmp"
        stale.mkdir(parents=True)
        # Leave less free space than the selection needs, unless the stale staging is counted.
        filler = shutil.disk_usage(mount).free - needed + (512 << 10)
        (stale / "00000").write_bytes(b"\1" * filler)
        assert shutil.disk_usage(mount).free < needed
        with CountingServer(root) as server:
            result = fetch(mount, server, catalog)
        assert not result.report.failed and not stale.exists()
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


# --------------------------------------------------------------------------- damaged state


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "not json": lambda p: p.write_bytes(b"\x00\xff garbage \x1b[31m"),
    "json list": lambda p: p.write_text("[1, 2, 3]"),
    "wrong record": lambda p: p.write_text(json.dumps({"format": 1, "files": {"x": {"relative_path": 3}}})),
    "deleted": lambda p: p.unlink(),
    "deleted with its backup": lambda p: (p.unlink(), p.with_name("inventory.previous.json").unlink(missing_ok=True)),
    "state folder deleted": lambda p: shutil.rmtree(p.parent),
    "inventory is a folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_state_costs_no_download_and_no_traceback(collection, tmp_path, damage):
    root, catalog, plain = collection
    md = tmp_path / "mirage_data"
    with CountingServer(root) as server:
        fetch(tmp_path, server, catalog)
    inventory = state_dir(md) / "inventory.json"
    DAMAGES[damage](inventory)
    for command in ("status", "verify", "env"):
        out = cli(command, str(md))
        assert out.returncode in (0, 1), (command, out.stdout, out.stderr)
    with CountingServer(root) as server:
        out = cli("repair", str(md), "--mirror", server.url)
        assert out.returncode in (0, 1) and not server.gets, (out.stdout, out.stderr, dict(server.gets))
    with CountingServer(root) as server:
        result = fetch(tmp_path, server, catalog)
        assert not server.gets, f"{damage}: fetched {dict(server.gets)} again"
    assert result.report is None
    rebuilt = Inventory.load(md)
    assert rebuilt.damage is None and set(rebuilt.records) == set(plain)
    cli("verify", str(md), check_code=0)


# --------------------------------------------------------------------------- provenance


def test_repair_never_replaces_a_made_file_with_a_download(collection, tmp_path):
    root, catalog, plain = collection
    md = tmp_path / "mirage_data"
    with CountingServer(root) as server:
        fetch(tmp_path, server, catalog)
    inventory = Inventory.load(md)
    made = inventory.get(FGS_RAW[0])
    assert made.origin == DOWNLOADED
    # Record the file as made locally (as `linearize --all` records its outputs), then damage it.
    path = md / made.files[0].path
    path.write_bytes(plain[FGS_RAW[0]][:-2880] + b"\0" * 2880)
    made.files[0] = type(made.files[0])(made.files[0].path, path.stat().st_size, sha256_of(path))
    made.origin, made.source = MADE, "linearize"
    inventory.add(made)
    path.write_bytes(b"damaged")
    downloaded = md / inventory.get(FGS_RAW[1]).files[0].path
    downloaded.write_bytes(b"damaged too")
    with CountingServer(root) as server:
        out = cli("repair", str(md), "--mirror", server.url)
        assert dict(server.gets) == {FGS_RAW[1]: 1}, out.stdout
    assert out.returncode == 1 and f"{FGS_RAW[0]}: made locally" in out.stdout, out.stdout
    assert path.read_bytes() == b"damaged"  # left for the user to make again, not downloaded
    assert downloaded.read_bytes() == plain[FGS_RAW[1]]
    with CountingServer(root) as server:  # nor does a download replace it
        fetch(tmp_path, server, catalog)
        assert not server.gets
    assert path.read_bytes() == b"damaged" and Inventory.load(md).get(FGS_RAW[0]).origin == MADE


def test_repair_relinks_a_linked_file(collection, tmp_path):
    root, catalog, plain = collection
    mirror = tmp_path / "share"
    shutil.copytree(root, mirror)
    for rp, data in plain.items():  # the share holds decompressed copies beside the .gz
        (mirror / rp).with_suffix("").write_bytes(data)
    from mirage_data import download_reffiles

    download_reffiles(
        tmp_path, "fgs", dark_type="raw", skip_psfs=True, mirror=mirror, catalog=catalog, link=True, quiet=True
    )
    md = tmp_path / "mirage_data"
    installed = (md / FGS_RAW[0]).with_suffix("")
    assert installed.is_symlink() and Inventory.load(md).get(FGS_RAW[0]).origin == "linked"
    installed.unlink()
    out = cli("repair", str(md), "--mirror", str(mirror), check_code=0)
    assert installed.is_symlink(), out.stdout
    assert installed.resolve() == (mirror / FGS_RAW[0]).with_suffix("").resolve()
