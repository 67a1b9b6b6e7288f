"""A small, real HTTP/1.1 file server on the loopback interface.

``CollectionServer`` serves the files below a folder at ``http://127.0.0.1:PORT/`` from
background threads. It exists so that everything that downloads can be exercised without the
network:

* the offline demo serves a generated sample collection folder with it;
* the download engine's tests use its fault injection (connection resets, truncated bodies,
  error statuses, stalls, files that change between attempts) and its statistics;
* the benchmarks cap each connection's rate, optionally from another process
  (:func:`serve_in_subprocess`) so that the server does not share the client's GIL.

It speaks enough HTTP for a resumable download client: GET and HEAD, keep-alive, strong
``ETag`` and ``Last-Modified`` validators, single byte ranges (``206``/``416``) and
``If-Range``. Only the standard library is used.

It can also be run on its own, serving until killed::

    python -m mirage_data.testing.server ROOT [--port N] [--rate-limit BYTES_PER_S]
                                        [--latency SECONDS] [--no-ranges] [--log-requests]

Examples
--------
>>> import requests
>>> from mirage_data.testing.server import CollectionServer, Fault
>>> with CollectionServer("sample_collection") as server:          # doctest: +SKIP
...     server.add_faults("nircam/dark.fits", Fault.reset(after_bytes=1000))
...     requests.get(server.url + "nircam/dark.fits")               # raises ConnectionError
...     requests.get(server.url + "nircam/dark.fits").status_code   # served normally: 200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import email.utils
import errno
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "CollectionServer",
    "Fault",
    "RequestRecord",
    "STATS_PATH",
    "main",
    "serve_in_subprocess",
]

#: Path of the JSON statistics endpoint (not counted in the statistics).
STATS_PATH = "/_loopback/stats"

#: Largest single write of a response body.
CHUNK_SIZE = 256 * 1024

#: A rate-limited body is written in pieces of about this many seconds' worth of bytes.
_PACING_INTERVAL = 0.02

_FAULT_KINDS = ("reset", "truncate", "status", "stall", "change_after")


# --------------------------------------------------------------------------------------------
# Faults and request records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure of one GET response; build it with a constructor classmethod.

    Constructors
    ------------
    ``Fault.reset(after_bytes)``
        Headers as usual (full ``Content-Length``), ``after_bytes`` of body, then the TCP
        connection is aborted with RST.
    ``Fault.truncate(after_bytes)``
        Headers declare the full length, only ``after_bytes`` of body are sent, then the
        connection is closed cleanly (FIN).
    ``Fault.status(code, retry_after=None)``
        The reply is status ``code`` with a short text body, plus ``Retry-After`` when given.
    ``Fault.stall(after_bytes, seconds)``
        ``after_bytes`` of body, then nothing for ``seconds``, then the connection is closed.
    ``Fault.change_after(after_bytes, new_content)``
        ``after_bytes`` of body, then the file is atomically replaced by ``new_content`` (so its
        ``ETag`` and ``Last-Modified`` change) and the connection is aborted with RST.

    ``after_bytes`` counts bytes of that response's body, whatever range was requested. When it
    is at least the body's length, the whole body is sent before the fault acts.

    Attributes
    ----------
    kind : str
        One of ``"reset"``, ``"truncate"``, ``"status"``, ``"stall"``, ``"change_after"``.
    after_bytes : int
        Body bytes sent before the fault acts (unused by ``status``).
    code : int or None
        Status code of a ``status`` fault.
    retry_after : int, str or None
        ``Retry-After`` value of a ``status`` fault (seconds, or an HTTP date string).
    seconds : float
        Duration of a ``stall``.
    new_content : bytes or None
        Replacement file content of a ``change_after`` fault.
    """

    kind: str
    after_bytes: int = 0
    code: int | None = None
    retry_after: int | str | None = None
    seconds: float = 0.0
    new_content: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")

    @classmethod
    def reset(cls, after_bytes: int) -> Fault:
        """Abort the connection with RST after ``after_bytes`` of body.

        Parameters
        ----------
        after_bytes : int
            Body bytes to send first.

        Returns
        -------
        Fault
        """
        return cls("reset", after_bytes=int(after_bytes))

    @classmethod
    def truncate(cls, after_bytes: int) -> Fault:
        """Send only ``after_bytes`` of a body declared full length, then close cleanly.

        Parameters
        ----------
        after_bytes : int
            Body bytes to send before closing.

        Returns
        -------
        Fault
        """
        return cls("truncate", after_bytes=int(after_bytes))

    @classmethod
    def status(cls, code: int, retry_after: int | str | None = None) -> Fault:
        """Answer with status ``code`` and a short body instead of the file.

        Parameters
        ----------
        code : int
            HTTP status code, e.g. 404, 429, 500 or 503.
        retry_after : int, str or None, optional
            Value of a ``Retry-After`` header (seconds or an HTTP date); none when ``None``.

        Returns
        -------
        Fault
        """
        return cls("status", code=int(code), retry_after=retry_after)

    @classmethod
    def stall(cls, after_bytes: int, seconds: float) -> Fault:
        """Send ``after_bytes`` of body, go silent for ``seconds``, then close the connection.

        Parameters
        ----------
        after_bytes : int
            Body bytes to send before stalling.
        seconds : float
            How long to stay silent (the client should time out first).

        Returns
        -------
        Fault
        """
        return cls("stall", after_bytes=int(after_bytes), seconds=float(seconds))

    @classmethod
    def change_after(cls, after_bytes: int, new_content: bytes) -> Fault:
        """Send ``after_bytes`` of body, replace the file on disk, abort the connection.

        Parameters
        ----------
        after_bytes : int
            Body bytes to send before the file changes.
        new_content : bytes
            The file's new content (written atomically: a new inode, new ETag).

        Returns
        -------
        Fault
        """
        return cls("change_after", after_bytes=int(after_bytes), new_content=bytes(new_content))


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (recorded when its headers are sent).

    Attributes
    ----------
    method : str
        ``"GET"`` or ``"HEAD"``.
    path : str
        The decoded URL path without its leading slash, e.g. ``"nircam/dark.fits"``.
    range : str or None
        The request's ``Range`` header, verbatim.
    if_range : str or None
        The request's ``If-Range`` header, verbatim.
    status : int
        The response status.
    fault : Fault or None
        The injected fault this request consumed, if any.
    """

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    fault: Fault | None = None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _Stopping(Exception):
    """Raised inside a handler when the server stops while it is sleeping."""


class _TokenBucket:
    """Token-bucket pacing of one response body at ``rate`` bytes per second.

    The bucket starts empty and holds at most two pieces, so the long-run rate is exact (sleep
    overshoot is credited back) and bursts stay below ``2 * piece`` bytes.
    """

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.rate = float(rate)
        self.piece = max(1, min(CHUNK_SIZE, int(self.rate * _PACING_INTERVAL)))
        self.capacity = 2 * self.piece
        self.tokens = 0.0
        self.last = time.monotonic()
        self._stop = stop

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, n: int) -> None:
        """Block (sleeping, not spinning) until ``n`` bytes may be sent, then spend them."""
        self._refill()
        while self.tokens < n:
            if self._stop.wait((n - self.tokens) / self.rate):
                raise _Stopping
            self._refill()
        self.tokens -= n


def _normalize_relpath(relpath: str | os.PathLike[str]) -> str:
    """``"/a//b/./c.fits"`` -> ``"a/b/c.fits"`` (the key used for faults and statistics)."""
    text = os.fspath(relpath).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _parse_http_date(text: str) -> int | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


def _parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """Parse a ``Range`` header against a representation of ``size`` bytes.

    Returns
    -------
    tuple of int, None or str
        ``(first, last)`` (inclusive) for one satisfiable range; ``None`` when the header is to
        be ignored (invalid syntax, other unit, several ranges); ``"unsatisfiable"`` for 416.
    """
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:  # multiple ranges: answered with the full representation
        return None
    first_text, dash, last_text = spec.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or (first_text and not first_text.isdigit()) or (last_text and not last_text.isdigit()):
        return None
    if not first_text:  # suffix range: the last n bytes
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            return "unsatisfiable"
        return (max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid range-spec: the whole header is ignored (RFC 9110 14.1.1)
    if first >= size:
        return "unsatisfiable"
    return (first, min(last, size - 1))


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and can close its live connections."""

    daemon_threads = True
    allow_reuse_address = True
    owner: CollectionServer

    def __init__(self, address: tuple[str, int], owner: CollectionServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection (wakes idle keep-alive handlers)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, _Stopping)) or self.owner._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Request handler of :class:`CollectionServer` (one per connection)."""

    protocol_version = "HTTP/1.1"
    server_version = "mirage-loopback/1.0"
    sys_version = ""
    server: _HTTPServer

    # -- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        # A blocking socket: os.sendfile needs it (a socket timeout would make it non-blocking).
        self.request.settimeout(None)
        context = self.server.owner.ssl_context
        if context is not None:
            # The TLS handshake runs here, on the connection's own thread.
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, _Stopping):
            self.close_connection = True
        except OSError:
            if not self.server.owner._stopping.is_set():
                raise
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.owner.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._respond(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib naming)
        self._respond(head=True)

    # -- responses ------------------------------------------------------------------------

    def _respond(self, head: bool) -> None:
        owner = self.server.owner
        self._discard_request_body()
        url_path = unquote(urlsplit(self.path).path)
        if url_path == STATS_PATH:
            self._send_stats(head)
            return

        relpath = _normalize_relpath(url_path)
        fault = None if head else owner._pop_fault(relpath)
        if owner.first_byte_latency > 0 and owner._stopping.wait(owner.first_byte_latency):
            raise _Stopping

        if fault is not None and fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            self._send_simple(fault.code or 500, relpath, head, headers, fault=fault)
            return

        path = owner._resolve(url_path)
        if path is None:
            self._send_simple(404, relpath, head, fault=fault)
            return
        try:
            f = open(path, "rb")
        except OSError:
            self._send_simple(404, relpath, head, fault=fault)
            return
        with f:
            st = os.fstat(f.fileno())
            self._send_file(f, st, relpath, head, fault)

    def _send_file(self, f: BinaryIO, st: os.stat_result, relpath: str, head: bool, fault: Fault | None) -> None:
        owner = self.server.owner
        size = st.st_size
        etag = _etag(st)
        last_modified = _http_date(st.st_mtime)

        status, first, last = 200, 0, size - 1
        range_header = self.headers.get("Range")
        if not head and owner.accept_ranges and range_header and size > 0:
            if self._if_range_matches(etag, st):
                parsed = _parse_range(range_header, size)
                if parsed == "unsatisfiable":
                    self._send_simple(416, relpath, head, {"Content-Range": f"bytes */{size}"}, fault=fault)
                    return
                if isinstance(parsed, tuple):
                    status, (first, last) = 206, parsed
        length = last - first + 1 if size > 0 else 0

        self._record(relpath, status, fault)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if owner.accept_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if head:
            return

        limit = length if fault is None else min(length, fault.after_bytes)
        self._copy(f, first, limit, relpath)
        if fault is None:
            return

        self.close_connection = True
        if fault.kind == "reset":
            self._abort_connection()
        elif fault.kind == "truncate":
            pass  # the connection is closed cleanly (FIN) after this request
        elif fault.kind == "stall":
            if owner._stopping.wait(fault.seconds):
                raise _Stopping
        elif fault.kind == "change_after":
            owner._replace_file(relpath, fault.new_content or b"")
            self._abort_connection()

    def _if_range_matches(self, etag: str, st: os.stat_result) -> bool:
        """Whether a Range may be honoured: no If-Range, or it matches (RFC 9110 13.1.5)."""
        if_range = self.headers.get("If-Range")
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith('"') or if_range.startswith("W/"):
            return if_range == etag  # strong comparison: a weak tag never matches
        date = _parse_http_date(if_range)
        return date is not None and date == int(st.st_mtime)

    def _copy(self, f: BinaryIO, offset: int, count: int, relpath: str) -> None:
        """Write ``count`` bytes of ``f`` from ``offset`` to the socket, paced and counted."""
        owner = self.server.owner
        bucket = _TokenBucket(owner.rate_limit, owner._stopping) if owner.rate_limit else None
        piece = bucket.piece if bucket else CHUNK_SIZE
        while count > 0:
            n = min(piece, count)
            if bucket:
                bucket.take(n)
            self._send_exactly(f, offset, n, relpath)
            offset += n
            count -= n

    def _send_exactly(self, f: BinaryIO, offset: int, n: int, relpath: str) -> None:
        """Send ``f[offset:offset + n]``; count it before sending, take back what failed.

        Counting first means that a client which has received the bytes always sees them in
        the statistics; an aborted write leaves only the bytes the kernel actually accepted.
        """
        owner = self.server.owner
        owner._count(relpath, n)
        done = 0
        try:
            while done < n:
                sent = self._send_some(f, offset + done, n - done)
                if sent == 0:  # the file shrank underneath us
                    raise ConnectionAbortedError("file ended early")
                done += sent
        finally:
            if done < n:
                owner._count(relpath, done - n)

    def _send_some(self, f: BinaryIO, offset: int, n: int) -> int:
        if _use_sendfile and not isinstance(self.request, ssl.SSLSocket):  # TLS: no sendfile
            try:
                return os.sendfile(self.request.fileno(), f.fileno(), offset, n)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP):
                    raise
                _disable_sendfile()
        f.seek(offset)
        data = f.read(n)
        if not data:
            return 0
        return self.request.send(data)

    def _abort_connection(self) -> None:
        """Close the socket now with SO_LINGER 0, so the kernel sends RST instead of FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; the descriptor closes when both are closed.
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.request.close()

    def _send_simple(
        self,
        status: int,
        relpath: str,
        head: bool,
        headers: dict[str, str] | None = None,
        *,
        fault: Fault | None = None,
    ) -> None:
        """A short text response that keeps the connection alive."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        body = f"{status} {phrase}\n".encode()
        self._record(relpath, status, fault)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_stats(self, head: bool) -> None:
        owner = self.server.owner
        with owner._lock:
            stats = {"bytes_served": owner._bytes_served, "requests": len(owner._requests)}
        body = json.dumps(stats).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _record(self, relpath: str, status: int, fault: Fault | None) -> None:
        self.server.owner._add_record(
            RequestRecord(
                method=self.command,
                path=relpath,
                range=self.headers.get("Range"),
                if_range=self.headers.get("If-Range"),
                status=status,
                fault=fault,
            )
        )

    def _discard_request_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.strip().isdigit():
            remaining = int(length)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)


_use_sendfile = hasattr(os, "sendfile")


def _disable_sendfile() -> None:
    global _use_sendfile
    _use_sendfile = False


class CollectionServer:
    """Serve the files below ``root`` over HTTP/1.1 on the loopback interface.

    Parameters
    ----------
    root : str or os.PathLike
        Folder whose files are served; ``<url>a/b.fits`` is ``root/a/b.fits``. Paths that
        escape it (``..``, absolute paths, symlinks pointing outside) and folders answer 404.
    host : str, optional
        Interface to listen on, ``"127.0.0.1"`` by default.
    port : int, optional
        Port to listen on; 0 (the default) picks a free one.
    rate_limit : float or None, optional
        Bytes per second for each response body (token-bucket pacing); ``None`` or 0 for no
        limit.
    first_byte_latency : float, optional
        Seconds to sleep before sending each response's headers.
    accept_ranges : bool, optional
        When False, ``Range`` and ``If-Range`` are ignored and no ``Accept-Ranges`` header is
        sent: every GET is a full 200, like a server without range support.
    log_requests : bool, optional
        Log each request to stderr (the ``http.server`` format). Off by default.
    ssl_context : ssl.SSLContext, optional
        Serve HTTPS with this server-side context (``url`` then starts ``https://``).

    Attributes
    ----------
    root : pathlib.Path
        The served folder (resolved).
    port : int
        The listening port (known once started; 0 before).

    Raises
    ------
    NotADirectoryError
        If ``root`` is not an existing folder.

    Examples
    --------
    >>> with CollectionServer(folder, rate_limit=4e6) as server:      # doctest: +SKIP
    ...     requests.get(server.url + "a.fits").content
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float | None = None,
        first_byte_latency: float = 0.0,
        accept_ranges: bool = True,
        log_requests: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.ssl_context = ssl_context
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {root}")
        self.host = host
        self._requested_port = int(port)
        self.port = self._requested_port
        self.rate_limit = float(rate_limit) if rate_limit else None
        self.first_byte_latency = float(first_byte_latency)
        self.accept_ranges = bool(accept_ranges)
        self.log_requests = bool(log_requests)
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must be positive")

        self._lock = threading.Lock()
        self._bytes_served = 0
        self._bytes_by_path: dict[str, int] = collections.defaultdict(int)
        self._requests: list[RequestRecord] = []
        self._faults: dict[str, collections.deque[Fault]] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> CollectionServer:
        """Start listening and serving on a background (daemon) thread.

        Returns
        -------
        CollectionServer
            ``self``.
        """
        if self._httpd is not None:
            raise RuntimeError("server already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the listener and every open connection, wake sleeping handlers."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> CollectionServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._httpd is not None

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. ``"http://127.0.0.1:40123/"``."""
        if self.port == 0:
            raise RuntimeError("the server has not been started, its port is not known yet")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    def url_for(self, relpath: str | os.PathLike[str]) -> str:
        """URL of the file at ``relpath`` (relative to ``root``), percent-encoded.

        Parameters
        ----------
        relpath : str or os.PathLike
            Path relative to the served root, with ``/`` separators.

        Returns
        -------
        str
        """
        return self.url + quote(_normalize_relpath(relpath))

    # -- faults ---------------------------------------------------------------------------

    def add_faults(self, relpath: str | os.PathLike[str], *faults: Fault) -> None:
        """Queue faults for the file at ``relpath``; each later GET of it takes the next one.

        Parameters
        ----------
        relpath : str or os.PathLike
            Path relative to the served root.
        *faults : Fault
            Faults, applied first-in first-out. When the queue is empty requests are served
            normally. HEAD requests never take a fault.
        """
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        key = _normalize_relpath(relpath)
        with self._lock:
            self._faults.setdefault(key, collections.deque()).extend(faults)

    def pending_faults(self, relpath: str | os.PathLike[str]) -> list[Fault]:
        """The faults still queued for ``relpath``.

        Parameters
        ----------
        relpath : str or os.PathLike
            Path relative to the served root.

        Returns
        -------
        list of Fault
        """
        with self._lock:
            return list(self._faults.get(_normalize_relpath(relpath), ()))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def _pop_fault(self, key: str) -> Fault | None:
        with self._lock:
            pending = self._faults.get(key)
            if not pending:
                return None
            fault = pending.popleft()
            if not pending:
                del self._faults[key]
            return fault

    # -- statistics -----------------------------------------------------------------------

    @property
    def bytes_served(self) -> int:
        """Body bytes written to sockets, including partial bodies of aborted responses."""
        with self._lock:
            return self._bytes_served

    def bytes_served_for(self, relpath: str | os.PathLike[str]) -> int:
        """Body bytes of the file at ``relpath`` written to sockets.

        Parameters
        ----------
        relpath : str or os.PathLike
            Path relative to the served root.

        Returns
        -------
        int
        """
        with self._lock:
            return self._bytes_by_path.get(_normalize_relpath(relpath), 0)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of answered requests, oldest first (stats endpoint excluded)."""
        with self._lock:
            return list(self._requests)

    def reset_stats(self) -> None:
        """Zero the byte counters and forget the request records (queued faults stay)."""
        with self._lock:
            self._bytes_served = 0
            self._bytes_by_path.clear()
            self._requests.clear()

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self._bytes_served += n
            self._bytes_by_path[key] += n

    def _add_record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    # -- files ----------------------------------------------------------------------------

    def _resolve(self, url_path: str) -> Path | None:
        """The regular file a decoded URL path names, or None (escaping, missing, folder)."""
        if "\x00" in url_path or "\\" in url_path:
            return None
        relative = url_path[1:] if url_path.startswith("/") else url_path
        if relative.startswith("/") or PurePosixPath(relative).is_absolute():
            return None  # "//etc/passwd", "/%2Fetc/passwd": absolute after decoding
        parts = relative.split("/")
        if any(part == ".." for part in parts):
            return None
        candidate = self.root.joinpath(*[p for p in parts if p not in ("", ".")])
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or not real.is_file():
            return None
        return real

    def _replace_file(self, relpath: str, content: bytes) -> None:
        """Atomically replace the file at ``relpath`` (a new inode, so a new ETag)."""
        target = self.root / relpath
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# --------------------------------------------------------------------------------------------
# Running in a process of its own
# --------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mirage_data.testing.server",
        description="Serve a folder over HTTP/1.1 on 127.0.0.1 until killed.",
    )
    parser.add_argument("root", metavar="ROOT", help="folder to serve")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="BYTES_PER_S",
        help="cap each response at this many bytes per second",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sleep this long before each response's headers",
    )
    parser.add_argument("--no-ranges", action="store_true", help="ignore Range headers")
    parser.add_argument("--log-requests", action="store_true", help="log requests to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: serve ``ROOT`` until interrupted or killed.

    Prints exactly one line, ``serving ROOT at http://127.0.0.1:PORT/``, once listening.

    Parameters
    ----------
    argv : list of str or None, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    args = _build_parser().parse_args(argv)
    server = CollectionServer(
        args.root,
        port=args.port,
        rate_limit=args.rate_limit,
        first_byte_latency=args.latency,
        accept_ranges=not args.no_ranges,
        log_requests=args.log_requests,
    )
    with server:
        print(f"serving {args.root} at {server.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


@contextlib.contextmanager
def serve_in_subprocess(
    root: str | os.PathLike[str],
    *,
    port: int = 0,
    rate_limit: float | None = None,
    first_byte_latency: float = 0.0,
    accept_ranges: bool = True,
    log_requests: bool = False,
    startup_timeout: float = 30.0,
) -> Iterator[str]:
    """Run ``python -m mirage_data.testing.server`` in a child process for the ``with`` block.

    The child uses ``sys.executable``; its statistics are at ``<url>_loopback/stats``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to serve.
    port, rate_limit, first_byte_latency, accept_ranges, log_requests
        As for :class:`CollectionServer`.
    startup_timeout : float, optional
        Seconds to wait for the child to report that it is listening.

    Yields
    ------
    str
        The server's base URL, with a trailing slash.

    Raises
    ------
    RuntimeError
        If the child exits or stays silent before it is listening.
    """
    cmd = [sys.executable, "-m", "mirage_data.testing.server", os.fspath(root), "--port", str(port)]
    if rate_limit:
        cmd += ["--rate-limit", repr(float(rate_limit))]
    if first_byte_latency:
        cmd += ["--latency", repr(float(first_byte_latency))]
    if not accept_ranges:
        cmd.append("--no-ranges")
    if log_requests:
        cmd.append("--log-requests")

    # Make the child import this very copy of the package, installed or not.
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        reader = threading.Thread(
            target=lambda: lines.put(proc.stdout.readline()),
            daemon=True,  # type: ignore[union-attr]
        )
        reader.start()
        try:
            line = lines.get(timeout=startup_timeout)
        except queue.Empty:
            raise RuntimeError(f"loopback server did not start within {startup_timeout} s: {cmd}") from None
        marker = " at "
        if not line.startswith("serving ") or marker not in line:
            raise RuntimeError(f"loopback server failed to start (exit status {proc.poll()}): {line!r}")
        yield line.rstrip("\n").rsplit(marker, 1)[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
