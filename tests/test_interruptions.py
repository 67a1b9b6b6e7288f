"""Interrupted runs: kill -9 and Ctrl-C of the real command, the run lock, verify and repair."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from collections_for_tests import FGS_RAW, dark_bytes, make_collection
from mirage_data.download.api import LockedError, download_reffiles, repair_install, run_lock
from mirage_data.download.partial import recorded_bytes
from mirage_data.install.inventory import Inventory
from mirage_data.install.state import partial_path
from mirage_data.install.upkeep import installed_status, verify_install
from support.faulty_server import FaultyServer

RATE = 1_000_000  # bytes/s per connection: slow enough to interrupt mid-file


@pytest.fixture
def slow_collection(tmp_path):
    """Two ~4 MB (stored-gzip, so little compression) darks on a rate-capped server."""
    raws = {FGS_RAW[i]: dark_bytes(4_000_000, seed=i) for i in (0, 1)}
    files = {rel: gzip.compress(raw, compresslevel=0, mtime=0) for rel, raw in raws.items()}
    root = tmp_path / "remote"
    catalog = make_collection(root, files)
    catalog.write(tmp_path / "catalog.tsv")
    with FaultyServer(root, rate_limit=RATE) as server:
        yield server, tmp_path / "catalog.tsv", raws, sum(len(d) for d in files.values())


def cli(dest, server, catalog_file, *extra):
    return [
        sys.executable,
        "-m",
        "mirage_data",
        "download",
        str(dest),
        "-i",
        "fgs",
        "--dark-type",
        "raw",
        "--mirror",
        server.url,
        "--catalog",
        str(catalog_file),
        "--connections",
        "2",
        *extra,
    ]


def recorded(dest, rels):
    return sum(recorded_bytes(partial_path(dest / "mirage_data", rel)) for rel in rels)


def wait_until(predicate, timeout=30.0):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def test_kill_9_repeatedly_then_finish(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    rels = list(raws)
    for _round in range(3):
        before = recorded(dest, rels)
        proc = subprocess.Popen(cli(dest, server, catalog_file, "-q"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Let each run add about a sixth of the total before it dies.
        wait_until(
            lambda before=before, proc=proc: recorded(dest, rels) > before + total // 6 or proc.poll() is not None
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    for rel in rels:  # nothing half-done in the layout
        assert not (dest / "mirage_data" / rel[:-3]).exists()
    done_before_last = recorded(dest, rels)
    assert done_before_last > total // 3
    served_so_far = server.bytes_served
    out = subprocess.run(cli(dest, server, catalog_file), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'export MIRAGE_DATA="' in out.stdout
    for rel, raw in raws.items():
        assert (dest / "mirage_data" / rel[:-3]).read_bytes() == raw
    # The last run fetched only what the killed runs had not recorded (plus a little slack
    # for bytes written after the last record update).
    last_run = server.bytes_served - served_so_far
    assert last_run <= total - done_before_last + 4 * (1 << 20)
    assert server.bytes_served < 1.5 * total


def test_ctrl_c_stops_promptly_and_resumes(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    rels = list(raws)
    proc = subprocess.Popen(cli(dest, server, catalog_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: recorded(dest, rels) > total // 4)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, err
    assert "interrupted" in err and "again" in err
    kept = recorded(dest, rels)
    assert kept > total // 4
    server.reset_stats()
    download_reffiles(dest, "fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)
    for rel, raw in raws.items():
        assert (dest / "mirage_data" / rel[:-3]).read_bytes() == raw
    assert server.bytes_served <= total - kept + 4 * (1 << 20)


def test_second_run_waits_for_or_refuses_the_lock(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    mirage_data = dest / "mirage_data"
    mirage_data.mkdir(parents=True)
    kwargs = dict(instrument="fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)
    with run_lock(mirage_data):
        with pytest.raises(LockedError, match="another mirage-data run"):
            download_reffiles(dest, wait=False, **kwargs)
    # With waiting: the second run blocks until the first releases the lock, then succeeds.
    released = threading.Event()

    def hold():
        with run_lock(mirage_data):
            started.set()
            time.sleep(1.0)
            released.set()

    started = threading.Event()
    t = threading.Thread(target=hold)
    t.start()
    started.wait()
    download_reffiles(dest, **kwargs)
    assert released.is_set()
    t.join()
    for rel, raw in raws.items():
        assert (mirage_data / rel[:-3]).read_bytes() == raw


def test_status_verify_repair(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    download_reffiles(dest, "fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)
    mirage_data = dest / "mirage_data"
    rels = list(raws)
    inventory = json.loads((mirage_data / ".mirage-data" / "inventory.json").read_text())
    record = inventory["files"][rels[0]]
    assert record["source"].startswith(server.url) and record["catalog_version"]
    assert record["files"][0]["size"] == len(raws[rels[0]])
    assert verify_install(mirage_data) == {}

    # Damage one file in place (same size: only hashing sees it), delete the other.
    damaged = mirage_data / rels[0][:-3]
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (mirage_data / rels[1][:-3]).unlink()
    rows = installed_status(mirage_data)
    raw_row = next(r for r in rows if r.instrument == "fgs" and r.title == "raw darks")
    assert raw_row.modified == [rels[1]]  # the quick check sees the deleted file only
    problems = verify_install(mirage_data)
    assert set(problems) == set(rels)
    assert "sha256" in problems[rels[0]][0][1] and problems[rels[1]][0][1] == "missing"

    server.reset_stats()
    found, report = repair_install(mirage_data, quiet=True)  # source remembered from the download
    assert set(found) == set(rels) and not report.failed
    assert verify_install(mirage_data) == {}
    for rel, raw in raws.items():
        assert (mirage_data / rel[:-3]).read_bytes() == raw
    assert Inventory.load(mirage_data).status(rels[0], deep=True) == "installed"


def test_cli_verify_exit_status(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    download_reffiles(dest, "fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "mirage_data", *args], capture_output=True, text=True)

    ok = run("verify", str(dest), "-q")
    assert ok.returncode == 0 and "verified" in ok.stdout
    (dest / "mirage_data" / list(raws)[0][:-3]).write_bytes(b"short")
    bad = run("verify", str(dest), "-q")
    assert bad.returncode == 1 and "repair" in bad.stdout
    status = run("status", str(dest / "mirage_data"))
    assert status.returncode == 0 and "modified:" in status.stdout
    env = run("env", str(dest))
    assert f'export MIRAGE_DATA="{dest / "mirage_data"}"' in env.stdout
    assert os.path.isdir(dest / "mirage_data")
