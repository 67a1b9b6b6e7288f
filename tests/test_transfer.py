"""The transfer engine against a real loopback HTTP server that misbehaves on purpose."""

from __future__ import annotations

import gzip
import time

import pytest

from collections_for_tests import FGS_RAW, dark_bytes, gz, make_collection
from mirage_data.download.api import DownloadFailed, download_reffiles
from mirage_data.download.partial import merge_ranges, missing_ranges, recorded_bytes, split_ranges
from mirage_data.download.transfer import TransferOptions
from mirage_data.install.state import partial_path
from support.faulty_server import Fault, FaultyServer

FAST = TransferOptions(backoff=0.02, max_backoff=0.5, read_timeout=1.0, connect_timeout=2.0, retries=3)
SEGMENT = 256 << 10  # small segments so a few-MB file uses several connections


def fetch(dest, server, catalog, **kw):
    options = kw.pop("options", FAST)
    kw.setdefault("connections", 4)
    return download_reffiles(
        dest,
        "fgs",
        dark_type="raw",
        mirror=server.url,
        catalog=catalog,
        quiet=True,
        options=options,
        **kw,
    )


def installed(dest, rel):
    return dest / "mirage_data" / rel[: -len(".gz")]


@pytest.fixture
def one_dark(tmp_path):
    """A collection of one FGS raw dark of ~3 MB uncompressed, served on loopback."""
    raw = dark_bytes(3_000_000)
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[0]: gz(raw)})
    with FaultyServer(root) as server:
        yield server, catalog, raw, FGS_RAW[0]


def test_ranges_helpers():
    assert merge_ranges([[0, 3], [3, 5], [10, 12]]) == [[0, 5], [10, 12]]
    assert missing_ranges([[0, 5], [10, 12]], 15) == [[5, 10], [12, 15]]
    parts = split_ranges([[0, 1000]], 4, 100)
    assert len(parts) == 4 and parts[0][0] == 0 and parts[-1][1] == 1000
    assert split_ranges([[0, 150]], 4, 100) == [[0, 150]]  # too small to split


def test_plain_download_is_byte_identical(one_dark, tmp_path):
    server, catalog, raw, rel = one_dark
    fetch(tmp_path / "dest", server, catalog)
    assert installed(tmp_path / "dest", rel).read_bytes() == raw
    assert not partial_path(tmp_path / "dest" / "mirage_data", rel).exists()


def test_several_connections_fill_one_file(tmp_path):
    raw = dark_bytes(6_000_000, seed=3)
    data = gzip.compress(raw, compresslevel=0)  # stored: a large compressed file
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[1]: data})
    opts = TransferOptions(**{**FAST.__dict__, "segment_size": SEGMENT})
    with FaultyServer(root) as server:
        fetch(tmp_path / "dest", server, catalog, options=opts, connections=4)
        ranged = [r for r in server.requests if r.method == "GET" and r.range]
    assert installed(tmp_path / "dest", FGS_RAW[1]).read_bytes() == raw
    assert len(ranged) >= 4, ranged


@pytest.mark.parametrize(
    "fault",
    [
        Fault.reset(after_bytes=100_000),
        Fault.truncate(after_bytes=50_000),
        Fault.status(500),
        Fault.status(502),
        Fault.status(429),
        Fault.stall(after_bytes=20_000, seconds=5),
    ],
    ids=["reset", "truncate", "500", "502", "429", "stall"],
)
def test_transient_failures_are_retried(one_dark, tmp_path, fault):
    server, catalog, raw, rel = one_dark
    server.add_faults(rel, fault, fault)
    fetch(tmp_path / "dest", server, catalog, connections=1)
    assert installed(tmp_path / "dest", rel).read_bytes() == raw
    assert not server.pending_faults(rel)


def test_retry_after_is_honoured(one_dark, tmp_path):
    server, catalog, raw, rel = one_dark
    server.add_faults(rel, Fault.status(503, retry_after=1))
    t0 = time.monotonic()
    fetch(tmp_path / "dest", server, catalog, connections=1)
    # A lower bound only (never flaky): without Retry-After the retry would come after 0.02 s.
    assert time.monotonic() - t0 >= 0.9
    assert installed(tmp_path / "dest", rel).read_bytes() == raw


@pytest.fixture
def big_dark(tmp_path):
    """One FGS raw dark of ~6 MB stored uncompressed in its gzip: several of the client's
    1 MiB reads, so that a connection cut half-way leaves whole reads on disk to resume from."""
    raw = dark_bytes(6_000_000, seed=4)
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[0]: gzip.compress(raw, compresslevel=0)})
    with FaultyServer(root) as server:
        yield server, catalog, raw, FGS_RAW[0]


def test_resume_after_a_cut_fetches_only_the_rest(big_dark, tmp_path):
    server, catalog, raw, rel = big_dark
    size = catalog.get(rel).size
    cut = size // 2
    # Every attempt of the first run is cut half-way: the run fails, the half stays on disk.
    # (A cut with FIN: a reset would also drop what the client's kernel had not yet handed on.)
    no_retry = TransferOptions(**{**FAST.__dict__, "retries": 0})
    server.add_faults(rel, Fault.truncate(after_bytes=cut))
    with pytest.raises(DownloadFailed):
        fetch(tmp_path / "dest", server, catalog, connections=1, options=no_retry)
    assert not installed(tmp_path / "dest", rel).exists()
    kept = recorded_bytes(partial_path(tmp_path / "dest" / "mirage_data", rel))
    assert 0 < kept <= cut
    server.reset_stats()
    fetch(tmp_path / "dest", server, catalog, connections=1)
    assert installed(tmp_path / "dest", rel).read_bytes() == raw
    gets = [r for r in server.requests if r.method == "GET"]
    # One conditional request for exactly the rest: from the first byte not kept to the end.
    assert len(gets) == 1 and gets[0].status == 206 and gets[0].if_range, gets
    assert gets[0].range in (f"bytes={kept}-", f"bytes={kept}-{size - 1}"), gets
    assert server.bytes_served_for(rel) == size - kept


def test_server_without_ranges_restarts_cleanly(tmp_path):
    raw = dark_bytes(2_000_000, seed=5)
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[2]: gz(raw)})
    with FaultyServer(root, accept_ranges=False) as server:
        server.add_faults(FGS_RAW[2], Fault.reset(after_bytes=200_000))
        fetch(tmp_path / "dest", server, catalog)
        assert all(r.status == 200 for r in server.requests if r.method == "GET")
    assert installed(tmp_path / "dest", FGS_RAW[2]).read_bytes() == raw


def test_file_changed_on_server_restarts_from_zero(tmp_path):
    old, new = dark_bytes(2_000_000, seed=1), dark_bytes(2_000_000, seed=2)
    root = tmp_path / "remote"
    # No checksums: the catalog cannot know which version is right; the server's validators can.
    catalog = make_collection(root, {FGS_RAW[3]: gz(old)}, checksums=False)
    with FaultyServer(root) as server:
        server.add_faults(FGS_RAW[3], Fault.change_after(after_bytes=300_000, new_content=gz(new)))
        fetch(tmp_path / "dest", server, catalog, connections=1)
        gets = [r for r in server.requests if r.method == "GET"]
    assert installed(tmp_path / "dest", FGS_RAW[3]).read_bytes() == new
    assert any(r.if_range for r in gets[1:])  # the resume asked conditionally and got all of it


def test_permanent_failure_fails_fast_and_others_finish(tmp_path):
    files = {FGS_RAW[0]: gz(dark_bytes(500_000)), FGS_RAW[1]: gz(dark_bytes(500_000, seed=9))}
    root = tmp_path / "remote"
    catalog = make_collection(root, files)
    with FaultyServer(root) as server:
        server.add_faults(FGS_RAW[0], *[Fault.status(404)] * 5)
        with pytest.raises(DownloadFailed) as info:
            fetch(tmp_path / "dest", server, catalog)
        attempts = [r for r in server.requests if FGS_RAW[0] in r.path and r.method == "GET"]
    message = str(info.value)
    assert "404" in message and FGS_RAW[0] in message and "again" in message
    assert len(attempts) == 1  # no retries of a 404: it fails at once
    assert installed(tmp_path / "dest", FGS_RAW[1]).exists()
    assert not installed(tmp_path / "dest", FGS_RAW[0]).exists()


def test_bad_checksum_twice_is_permanent_and_installs_nothing(tmp_path):
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[0]: gz(dark_bytes(400_000))})
    entry = catalog.get(FGS_RAW[0])
    catalog = catalog.with_checksums({entry.relative_path: (entry.size, "0" * 64)})
    with FaultyServer(root) as server:
        with pytest.raises(DownloadFailed, match="sha256"):
            fetch(tmp_path / "dest", server, catalog)
        full_gets = [r for r in server.requests if r.method == "GET"]
    assert len(full_gets) == 2
    assert not installed(tmp_path / "dest", FGS_RAW[0]).exists()


def test_truncated_download_never_installed(one_dark, tmp_path):
    server, catalog, raw, rel = one_dark
    no_retry = TransferOptions(**{**FAST.__dict__, "retries": 0})
    server.add_faults(rel, Fault.truncate(after_bytes=10_000))
    with pytest.raises(DownloadFailed, match="connection closed early"):
        fetch(tmp_path / "dest", server, catalog, connections=1, options=no_retry)
    final = installed(tmp_path / "dest", rel)
    assert not final.exists()
    assert not list(final.parent.glob("*")) if final.parent.exists() else True


def test_corrupt_gzip_is_refused(tmp_path):
    data = bytearray(gz(dark_bytes(400_000)))
    data[len(data) // 2] ^= 0xFF  # damage inside the deflate stream
    root = tmp_path / "remote"
    catalog = make_collection(root, {FGS_RAW[0]: bytes(data)})  # checksums match the damaged file
    with FaultyServer(root) as server:
        with pytest.raises(DownloadFailed, match="gzip|damaged"):
            fetch(tmp_path / "dest", server, catalog)
    assert not installed(tmp_path / "dest", FGS_RAW[0]).exists()
