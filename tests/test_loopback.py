"""Tests of the loopback HTTP servers (real sockets on 127.0.0.1): the product's static
``CollectionServer`` and the tests' ``FaultyServer`` built on its hooks."""

from __future__ import annotations

import email.utils
import http.client
import os
import time
from pathlib import Path

import pytest
import requests
import urllib3

from mirage_data.testing.server import CHUNK_SIZE, CollectionServer, StaticFileHandler
from support.faulty_server import Fault, FaultyServer, RequestRecord, serve_in_subprocess

SIZE = 300_000


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(SIZE))
    (root / "sub" / "small.txt").write_bytes(b"hello, loopback\n")
    (root / "empty.bin").write_bytes(b"")
    (tmp_path / "secret.txt").write_bytes(b"do not serve me")
    return root


@pytest.fixture
def server(root: Path):
    with CollectionServer(root) as srv:
        yield srv


@pytest.fixture
def faulty(root: Path):
    with FaultyServer(root) as srv:
        yield srv


@pytest.fixture
def data(root: Path) -> bytes:
    return (root / "data.bin").read_bytes()


def raw_get(server: CollectionServer, target: str, headers: dict | None = None):
    """GET ``target`` verbatim (no client-side path normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_raw(response: requests.Response, size: int = 65536) -> tuple[bytes, Exception | None]:
    """Read a streamed body with raw reads, returning what arrived and the error, if any.

    A raw read of ``size`` bytes waits for all of them, so a read that times out loses what
    it had gathered: use reads no larger than the bytes expected before a stall.
    """
    received = bytearray()
    try:
        while chunk := response.raw.read(size):
            received += chunk
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return bytes(received), exc
    return bytes(received), None


# -- plain GET / HEAD -------------------------------------------------------------------------


def test_url_has_trailing_slash(server: CollectionServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/"
    assert server.url_for("sub/small.txt") == server.url + "sub/small.txt"


def test_full_get(server: CollectionServer, data: bytes) -> None:
    r = requests.get(server.url + "data.bin", timeout=5)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"].startswith('"') and r.headers["ETag"].endswith('"')
    assert "Last-Modified" in r.headers
    assert requests.get(server.url + "sub/small.txt", timeout=5).content == b"hello, loopback\n"


def test_empty_file(server: CollectionServer) -> None:
    r = requests.get(server.url + "empty.bin", headers={"Range": "bytes=0-"}, timeout=5)
    assert r.status_code == 200 and r.content == b""


def test_head(server: CollectionServer, root: Path) -> None:
    r = requests.head(server.url + "data.bin", timeout=5)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["Accept-Ranges"] == "bytes"
    mtime = (root / "data.bin").stat().st_mtime
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == int(mtime)
    assert r.headers["ETag"] == requests.get(server.url + "data.bin", timeout=5).headers["ETag"]
    # HEAD ignores Range (range handling is defined for GET only)
    r = requests.head(server.url + "data.bin", headers={"Range": "bytes=0-9"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Length"] == str(SIZE)


def test_missing_file_and_directories_404(server: CollectionServer) -> None:
    for path in ("nope.bin", "sub", "sub/", ""):
        assert requests.get(server.url + path, timeout=5).status_code == 404, path
    assert requests.head(server.url + "nope.bin", timeout=5).status_code == 404


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/sub/%2E%2E/../secret.txt",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
        "/..%2Fsecret.txt",
        "/..\\secret.txt",
    ],
)
def test_path_traversal_refused(server: CollectionServer, target: str) -> None:
    status, body = raw_get(server, target)
    assert status == 404
    assert b"do not serve me" not in body


def test_symlink_escaping_root_refused(server: CollectionServer, root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    assert requests.get(server.url + "link.txt", timeout=5).status_code == 404


# -- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=250000-", 250_000, SIZE - 1),
        ("bytes=-100", SIZE - 100, SIZE - 1),
        ("bytes=-999999999", 0, SIZE - 1),
        ("bytes=299990-999999999", 299_990, SIZE - 1),
        ("bytes=7-7", 7, 7),
    ],
)
def test_range(server: CollectionServer, data: bytes, spec: str, first: int, last: int) -> None:
    r = requests.get(server.url + "data.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.content == data[first : last + 1]


@pytest.mark.parametrize("spec", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_range_unsatisfiable(server: CollectionServer, spec: str) -> None:
    r = requests.get(server.url + "data.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("spec", ["bytes=0-9,20-29", "bytes=9-0", "items=0-9", "bytes=abc"])
def test_multi_or_invalid_range_gives_full_body(server: CollectionServer, data: bytes, spec: str) -> None:
    r = requests.get(server.url + "data.bin", headers={"Range": spec}, timeout=5)
    assert r.status_code == 200
    assert r.content == data


def test_if_range(server: CollectionServer, data: bytes) -> None:
    url = server.url + "data.bin"
    head = requests.head(url, timeout=5).headers
    etag, last_modified = head["ETag"], head["Last-Modified"]

    def get(if_range: str) -> requests.Response:
        return requests.get(url, headers={"Range": "bytes=100-", "If-Range": if_range}, timeout=5)

    r = get(etag)
    assert r.status_code == 206 and r.content == data[100:]
    r = get(last_modified)
    assert r.status_code == 206 and r.content == data[100:]
    for stale in ('"some-other-etag"', "W/" + etag, "Thu, 01 Jan 2015 00:00:00 GMT", "garbage"):
        r = get(stale)
        assert r.status_code == 200, stale
        assert r.content == data
        assert "Content-Range" not in r.headers


def test_accept_ranges_false(root: Path, data: bytes) -> None:
    with FaultyServer(root, accept_ranges=False) as server:
        for spec in ("bytes=0-99", "bytes=-10", f"bytes={SIZE}-"):
            r = requests.get(server.url + "data.bin", headers={"Range": spec}, timeout=5)
            assert r.status_code == 200
            assert r.content == data
            assert "Accept-Ranges" not in r.headers
            assert "Content-Range" not in r.headers


# -- connections ------------------------------------------------------------------------------


def test_keep_alive(server: CollectionServer, data: bytes) -> None:
    with requests.Session() as session:
        assert session.get(server.url + "data.bin", timeout=5).content == data
        r = session.get(server.url + "data.bin", headers={"Range": "bytes=-5"}, timeout=5)
        assert r.content == data[-5:]
        assert session.get(server.url + "nope", timeout=5).status_code == 404
        assert session.get(server.url + "sub/small.txt", timeout=5).ok

    # The same socket carries several requests (http.client never reconnects by itself here).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/data.bin")
        assert conn.getresponse().read() == data
        sock = conn.sock
        conn.request("HEAD", "/data.bin")
        conn.getresponse().read()
        conn.request("GET", "/missing")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.read()
        conn.request("GET", "/sub/small.txt")
        assert conn.getresponse().read() == b"hello, loopback\n"
        assert conn.sock is sock
    finally:
        conn.close()


def test_first_byte_latency(root: Path) -> None:
    # A lower bound only: the server sleeps at least this long, however busy the machine.
    with FaultyServer(root, first_byte_latency=0.2) as server:
        start = time.monotonic()
        requests.get(server.url + "sub/small.txt", timeout=5)
        assert time.monotonic() - start >= 0.2


class _PieceCounter(StaticFileHandler):
    """Counts the body pieces the static server writes (the rate limit sets their size)."""

    pieces: list[int] = []

    def send_piece(self, f, offset, n, relpath):
        type(self).pieces.append(n)
        super().send_piece(f, offset, n, relpath)


def test_rate_limit(tmp_path: Path) -> None:
    # The token bucket starts empty, so 2 MB at 4 MB/s cannot arrive in under 0.5 s: a lower
    # bound that holds on any machine (an upper bound would measure the machine, not the code).
    (tmp_path / "two_mb.bin").write_bytes(os.urandom(2_000_000))
    _PieceCounter.pieces = []
    with CollectionServer(tmp_path, rate_limit=4_000_000, handler_class=_PieceCounter) as server:
        start = time.monotonic()
        r = requests.get(server.url + "two_mb.bin", timeout=10)
        elapsed = time.monotonic() - start
    assert len(r.content) == 2_000_000
    assert elapsed >= 0.5, elapsed
    # paced in pieces of 20 ms worth of bytes (80 kB), not in a few large writes
    assert max(_PieceCounter.pieces) == 80_000 and sum(_PieceCounter.pieces) == 2_000_000


def test_no_rate_limit_writes_large_pieces(tmp_path: Path) -> None:
    (tmp_path / "two_mb.bin").write_bytes(os.urandom(2_000_000))
    _PieceCounter.pieces = []
    with CollectionServer(tmp_path, handler_class=_PieceCounter) as server:
        assert len(requests.get(server.url + "two_mb.bin", timeout=10).content) == 2_000_000
    assert max(_PieceCounter.pieces) == CHUNK_SIZE


def test_hooks_can_answer_and_see_every_response(root: Path) -> None:
    seen = []

    class Teapot(StaticFileHandler):
        def before_response(self, relpath, head):
            if relpath == "teapot":
                self.send_simple(418, relpath, head)
                return True
            return False

        def response_started(self, relpath, status):
            seen.append((self.command, relpath, status))

    with CollectionServer(root, handler_class=Teapot) as server:
        assert requests.get(server.url + "teapot", timeout=5).status_code == 418
        assert requests.get(server.url + "sub/small.txt", timeout=5).content == b"hello, loopback\n"
        assert requests.get(server.url + "nope", timeout=5).status_code == 404
        assert requests.get(server.url + "sub/small.txt", headers={"Range": "bytes=99-"}, timeout=5).status_code == 416
    assert seen == [
        ("GET", "teapot", 418),
        ("GET", "sub/small.txt", 200),
        ("GET", "nope", 404),
        ("GET", "sub/small.txt", 416),
    ]


def test_static_server_has_no_test_machinery(server: CollectionServer) -> None:
    assert requests.get(server.url + "_loopback/stats", timeout=5).status_code == 404
    for name in ("add_faults", "requests", "bytes_served", "reset_stats"):
        assert not hasattr(server, name), name


# -- faults -----------------------------------------------------------------------------------


def test_fault_reset(faulty: FaultyServer, data: bytes) -> None:
    faulty.add_faults("data.bin", Fault.reset(after_bytes=1000))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.get(faulty.url + "data.bin", timeout=5)
    assert faulty.bytes_served_for("data.bin") == 1000
    assert faulty.requests[-1].fault == Fault.reset(1000)
    # the queue is empty again: served normally
    assert requests.get(faulty.url + "data.bin", timeout=5).content == data


def test_fault_truncate(faulty: FaultyServer, data: bytes) -> None:
    faulty.add_faults("data.bin", Fault.truncate(after_bytes=5000))
    r = requests.get(faulty.url + "data.bin", stream=True, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(SIZE)
    received, error = read_raw(r)
    assert len(received) == 5000 < SIZE
    assert received == data[:5000]
    assert error is not None  # urllib3 notices the short body


def test_fault_truncate_applies_to_the_requested_range(faulty: FaultyServer, data: bytes) -> None:
    faulty.add_faults("data.bin", Fault.truncate(after_bytes=100))
    r = requests.get(faulty.url + "data.bin", headers={"Range": "bytes=1000-"}, stream=True, timeout=5)
    assert r.status_code == 206
    received, _ = read_raw(r)
    assert received == data[1000:1100]


def test_fault_status(faulty: FaultyServer, data: bytes) -> None:
    faulty.add_faults(
        "data.bin",
        Fault.status(503, retry_after=7),
        Fault.status(429, retry_after=1),
        Fault.status(500),
        Fault.status(404),
        Fault.status(403),
    )
    url = faulty.url + "data.bin"
    with requests.Session() as session:  # status faults keep the connection usable
        r = session.get(url, timeout=5)
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
        # HEAD does not consume faults
        assert session.head(url, timeout=5).status_code == 200
        r = session.get(url, timeout=5)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        r = session.get(url, timeout=5)
        assert r.status_code == 500 and "Retry-After" not in r.headers
        assert session.get(url, timeout=5).status_code == 404
        assert session.get(url, timeout=5).status_code == 403
        assert session.get(url, timeout=5).content == data
    assert [rec.status for rec in faulty.requests] == [503, 200, 429, 500, 404, 403, 200]


def test_fault_stall(faulty: FaultyServer) -> None:
    # The stall outlasts the test; the client's read timeout is what ends the wait.
    faulty.add_faults("data.bin", Fault.stall(after_bytes=1000, seconds=3600))
    r = requests.get(faulty.url + "data.bin", stream=True, timeout=(2, 0.3))
    received, error = read_raw(r, size=500)
    assert isinstance(error, urllib3.exceptions.ReadTimeoutError)
    assert len(received) == 1000
    # the server is still inside the stall: the response started and has not ended
    assert faulty.events == [("start", "data.bin")]
    assert faulty.bytes_served_for("data.bin") == 1000


def test_fault_change_after(faulty: FaultyServer, root: Path, data: bytes) -> None:
    url = faulty.url + "data.bin"
    old = requests.head(url, timeout=5).headers
    faulty.add_faults("data.bin", Fault.change_after(after_bytes=2000, new_content=b"new content"))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.get(url, timeout=5)
    assert (root / "data.bin").read_bytes() == b"new content"
    new = requests.head(url, timeout=5).headers
    assert new["ETag"] != old["ETag"]
    assert new["Content-Length"] == str(len(b"new content"))
    # a resume with the old validator gets the whole new file
    r = requests.get(url, headers={"Range": "bytes=2000-", "If-Range": old["ETag"]}, timeout=5)
    assert r.status_code == 200 and r.content == b"new content"
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_faults_are_fifo_per_path(faulty: FaultyServer, data: bytes) -> None:
    faulty.add_faults("/sub//small.txt", Fault.status(500))
    faulty.add_faults("data.bin", Fault.status(502), Fault.truncate(10))
    assert faulty.pending_faults("data.bin") == [Fault.status(502), Fault.truncate(10)]
    assert requests.get(faulty.url + "data.bin", timeout=5).status_code == 502
    assert requests.get(faulty.url + "sub/small.txt", timeout=5).status_code == 500
    r = requests.get(faulty.url + "data.bin", stream=True, timeout=5)
    assert read_raw(r)[0] == data[:10]
    assert requests.get(faulty.url + "data.bin", timeout=5).content == data
    assert faulty.pending_faults("data.bin") == []


def test_fault_constructors() -> None:
    assert Fault.reset(5).kind == "reset" and Fault.reset(5).after_bytes == 5
    assert Fault.stall(1, 2.5).seconds == 2.5
    assert Fault.status(503, retry_after=3).code == 503
    assert Fault.change_after(0, b"x").new_content == b"x"
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault.truncate(-1)


# -- statistics -------------------------------------------------------------------------------


def test_stats(faulty: FaultyServer) -> None:
    with requests.Session() as session:
        session.get(faulty.url + "data.bin", timeout=5)
        session.get(faulty.url + "data.bin", headers={"Range": "bytes=0-99"}, timeout=5)
        session.head(faulty.url + "data.bin", timeout=5)
        session.get(faulty.url + "sub/small.txt", timeout=5)
        session.get(faulty.url + "missing", timeout=5)
        stats = session.get(faulty.url + "_loopback/stats", timeout=5).json()

    assert faulty.bytes_served_for("data.bin") == SIZE + 100
    assert faulty.bytes_served_for("sub/small.txt") == 16
    assert faulty.bytes_served == SIZE + 100 + 16
    assert stats == {"bytes_served": SIZE + 100 + 16, "requests": 5}
    assert faulty.requests == [
        RequestRecord("GET", "data.bin", None, None, 200),
        RequestRecord("GET", "data.bin", "bytes=0-99", None, 206),
        RequestRecord("HEAD", "data.bin", None, None, 200),
        RequestRecord("GET", "sub/small.txt", None, None, 200),
        RequestRecord("GET", "missing", None, None, 404),
    ]
    faulty.reset_stats()
    assert faulty.bytes_served == 0 and faulty.requests == []
    assert faulty.bytes_served_for("data.bin") == 0


def test_stop_wakes_open_and_stalled_connections(root: Path) -> None:
    faulty = FaultyServer(root).start()
    faulty.add_faults("data.bin", Fault.stall(after_bytes=10, seconds=3600))
    session = requests.Session()
    session.get(faulty.url + "sub/small.txt", timeout=5)  # an idle keep-alive connection
    stalled = requests.get(faulty.url + "data.bin", stream=True, timeout=5)
    assert stalled.raw.read(10)
    assert ("end", "data.bin") not in faulty.events
    faulty.stop()
    # Only stop() can end an hour-long stall: its "end" event shows the handler was woken
    # (the wait's timeout is a guard against hanging, not a measure).
    faulty.wait_for(lambda events: ("end", "data.bin") in events, timeout=30)
    session.close()
    stalled.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{faulty.port}/sub/small.txt", timeout=2)


def test_events_show_overlap_and_order(faulty: FaultyServer) -> None:
    faulty.add_faults("data.bin", Fault.stall(after_bytes=10, seconds=3600))
    stalled = requests.get(faulty.url + "data.bin", stream=True, timeout=5)
    assert stalled.raw.read(10)
    requests.get(faulty.url + "sub/small.txt", timeout=5)
    requests.get(faulty.url + "nope", timeout=5)
    # the server notes a response's end just after the client has it: wait for that event
    faulty.wait_for(lambda events: ("end", "nope") in events)
    assert faulty.events == [
        ("start", "data.bin"),
        ("start", "sub/small.txt"),
        ("end", "sub/small.txt"),
        ("start", "nope"),
        ("end", "nope"),
    ]
    stalled.close()


# -- another process --------------------------------------------------------------------------


def test_serve_in_subprocess(root: Path, data: bytes) -> None:
    with serve_in_subprocess(root, rate_limit=50_000_000) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        with requests.Session() as session:
            assert session.get(url + "data.bin", timeout=10).content == data
            r = session.get(url + "data.bin", headers={"Range": "bytes=-10"}, timeout=10)
            assert r.content == data[-10:]
            stats = session.get(url + "_loopback/stats", timeout=10).json()
    assert stats == {"bytes_served": SIZE + 10, "requests": 2}
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "data.bin", timeout=2)


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        CollectionServer(tmp_path / "missing")
