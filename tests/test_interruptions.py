"""Interrupted runs: kill -9 and Ctrl-C of the real command, the run lock, verify and repair."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from collections_for_tests import FGS_RAW, dark_bytes, make_collection
from mirage_data.collection.catalog import load_catalog
from mirage_data.download.api import LockedError, download_reffiles, repair_install, run_lock
from mirage_data.download.partial import recorded_bytes
from mirage_data.install.inventory import Inventory
from mirage_data.install.state import partial_path
from mirage_data.install.upkeep import installed_status, verify_install
from support.faulty_server import Fault, FaultyServer

RATE = 1_000_000  # bytes/s per connection: slow enough to interrupt mid-file

# Bytes a resumed run may be served beyond what was missing: what a connection had in flight
# when the client closed a range it no longer needed. Far below what was kept in each test,
# so a run that starts over cannot pass.
SLACK = 1 << 20


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


def assert_resumed(requests, rels):
    """Every GET of ``rels`` in ``requests`` asked for a later part of the file, conditionally."""
    gets = [r for r in requests if r.method == "GET"]
    assert {r.path for r in gets} == set(rels)
    for r in gets:
        assert r.range and r.if_range and r.status == 206, r


def catalog_of(catalog_file, rel, folder):
    """A catalog file listing only ``rel`` of ``catalog_file``."""
    out = folder / f"catalog_{rel.rsplit('/', 1)[1]}.tsv"
    load_catalog(catalog_file).subset([rel]).write(out)
    return out


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
    served_so_far, requests_so_far = server.bytes_served, len(server.requests)
    out = subprocess.run(cli(dest, server, catalog_file), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'export MIRAGE_DATA="' in out.stdout
    for rel, raw in raws.items():
        assert (dest / "mirage_data" / rel[:-3]).read_bytes() == raw
    # The last run fetched only what the killed runs had not recorded, each file resumed
    # with conditional range requests (a run that starts over would fetch all of `total`).
    last_run = server.bytes_served - served_so_far
    assert done_before_last > SLACK
    assert total - done_before_last <= last_run <= total - done_before_last + SLACK
    assert_resumed(server.requests[requests_so_far:], rels)
    assert server.bytes_served < 1.5 * total


def test_ctrl_c_stops_promptly_and_resumes(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    rels = list(raws)
    # Each file's response goes silent after 60 % of it until well after the Ctrl-C, so the run
    # is interrupted mid-file however slow this machine is (an event, not a race against time).
    for rel in rels:
        server.add_faults(rel, Fault.stall(after_bytes=(total // 2) * 3 // 5, seconds=120))
    proc = subprocess.Popen(cli(dest, server, catalog_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: recorded(dest, rels) > total // 4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # a guard against a hang, not a measure
    assert proc.returncode == 130, err
    assert "interrupted" in err and "again" in err
    # Stopped where it was, not after finishing its files (about 3 s of transfer remained).
    for rel in rels:
        assert not (dest / "mirage_data" / rel[:-3]).exists()
    kept = recorded(dest, rels)
    assert total // 4 < kept < total
    server.reset_stats()
    download_reffiles(dest, "fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)
    for rel, raw in raws.items():
        assert (dest / "mirage_data" / rel[:-3]).read_bytes() == raw
    assert kept > SLACK  # so that a run that starts over (served: total) fails the next line
    assert total - kept <= server.bytes_served <= total - kept + SLACK
    assert_resumed(server.requests, rels)


def test_second_run_refuses_the_lock_without_wait(slow_collection, tmp_path):
    server, catalog_file, raws, total = slow_collection
    mirage_data = tmp_path / "dest" / "mirage_data"
    mirage_data.mkdir(parents=True)
    kwargs = dict(instrument="fgs", dark_type="raw", mirror=server.url, catalog=catalog_file, quiet=True)
    with run_lock(mirage_data):
        with pytest.raises(LockedError, match="another mirage-data run"):
            download_reffiles(tmp_path / "dest", wait=False, **kwargs)
    assert server.requests == []  # refused before asking the server anything


def test_second_run_waits_for_the_first(slow_collection, tmp_path):
    """Two runs into one tree: the second one's requests all come after the first one's.

    The first run (a process of its own) fetches one dark, the second (here) the other; the
    server's log of response starts and ends shows whether they overlapped. The first run still
    has seconds of rate-capped transfer ahead when the second starts, so a lock that does not
    wait lets the second run's requests in among the first one's.
    """
    server, catalog_file, raws, total = slow_collection
    dest = tmp_path / "dest"
    first, second = list(raws)
    first_catalog, second_catalog = (
        catalog_of(catalog_file, first, tmp_path),
        catalog_of(catalog_file, second, tmp_path),
    )
    proc = subprocess.Popen(cli(dest, server, first_catalog, "-q"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The first run holds the lock once it is fetching: its first GET has started.
        server.wait_for(lambda events: ("start", first) in events)
        download_reffiles(dest, "fgs", dark_type="raw", mirror=server.url, catalog=second_catalog, quiet=True)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    events = server.events
    last_of_first = max(i for i, (kind, path) in enumerate(events) if path == first and kind == "end")
    first_of_second = min(i for i, (kind, path) in enumerate(events) if path == second)
    assert last_of_first < first_of_second, events
    for rel, raw in raws.items():
        assert (dest / "mirage_data" / rel[:-3]).read_bytes() == raw


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
