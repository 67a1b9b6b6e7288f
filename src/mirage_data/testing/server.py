"""A plain static HTTP/1.1 file server on the loopback interface.

``CollectionServer`` serves the files below a folder at ``http://127.0.0.1:PORT/`` from
background threads, so that the offline demo and the benchmarks can download without the
network. It speaks what a resumable download client needs and nothing more: GET and HEAD,
keep-alive, strong ``ETag`` and ``Last-Modified`` validators, single byte ranges
(``206``/``416``) and ``If-Range``, with an optional per-connection rate limit. Only the
standard library is used.

Behaviour beyond serving files (the test suite's injected failures and request logs, in
``tests/support``) is added by subclassing :class:`StaticFileHandler`, overriding its hook
methods, and passing the subclass as ``handler_class``; see :class:`StaticFileHandler`.

Examples
--------
>>> import pathlib, tempfile, requests
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.fits").write_bytes(b"0123456789")
>>> with CollectionServer(folder) as server:
...     requests.get(server.url + "a.fits", headers={"Range": "bytes=4-"}).content
b'456789'
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import os
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

__all__ = ["CHUNK_SIZE", "CollectionServer", "StaticFileHandler", "Stopping", "normalize_relpath"]

#: Largest single write of a response body.
CHUNK_SIZE = 256 * 1024

#: A rate-limited body is written in pieces of about this many seconds' worth of bytes.
_PACING_INTERVAL = 0.02


class Stopping(Exception):
    """Raised inside a handler when the server stops while the handler is waiting."""


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
                raise Stopping
            self._refill()
        self.tokens -= n


def normalize_relpath(relpath: str | os.PathLike[str]) -> str:
    """A served path without empty or ``.`` parts and without a leading slash.

    Parameters
    ----------
    relpath : str or os.PathLike
        A path relative to the served root, or a decoded URL path.

    Returns
    -------
    str

    Examples
    --------
    >>> normalize_relpath("/a//b/./c.fits")
    'a/b/c.fits'
    """
    text = os.fspath(relpath).replace("\\", "/")
    return "/".join(p for p in text.split("/") if p not in ("", "."))


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


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and can close its live connections."""

    daemon_threads = True
    allow_reuse_address = True
    owner: CollectionServer

    def __init__(self, address: tuple[str, int], owner: CollectionServer, handler: type) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

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
        if isinstance(exc, self.owner.ignored_errors) or self.owner.stopping.is_set():
            return
        super().handle_error(request, client_address)


class StaticFileHandler(BaseHTTPRequestHandler):
    """Request handler of :class:`CollectionServer` (one instance per connection).

    Hooks
    -----
    Subclasses add behaviour by overriding these methods; the defaults serve files plainly.

    ``before_response(relpath, head) -> bool``
        Called once per request before anything is sent. Return True when the hook has
        answered the request itself (e.g. with :meth:`send_simple`).
    ``response_started(relpath, status)``
        Called for every response just before its status line is sent.
    ``send_body(f, offset, count, relpath)``
        Writes ``count`` bytes of the open file ``f`` from ``offset``, in pieces of at most
        :data:`CHUNK_SIZE` bytes (paced by the rate limit), each through ``send_piece``.
    ``send_piece(f, offset, n, relpath)``
        Writes exactly ``n`` bytes of ``f`` from ``offset`` to the socket.

    ``accept_ranges`` (a class attribute, True) says whether ``Range`` is honoured.
    ``self.server.owner`` is the :class:`CollectionServer`.
    """

    protocol_version = "HTTP/1.1"
    server_version = "mirage-loopback/1.0"
    sys_version = ""
    accept_ranges = True
    server: _HTTPServer

    # -- hooks ----------------------------------------------------------------------------

    def before_response(self, relpath: str, head: bool) -> bool:
        """Hook: answer the request here instead (return True); by default do nothing."""
        return False

    def response_started(self, relpath: str, status: int) -> None:
        """Hook: a response with ``status`` for ``relpath`` is about to be sent."""

    def send_body(self, f: BinaryIO, offset: int, count: int, relpath: str) -> None:
        """Write ``count`` bytes of ``f`` from ``offset``, paced by the server's rate limit."""
        owner = self.server.owner
        bucket = _TokenBucket(owner.rate_limit, owner.stopping) if owner.rate_limit else None
        piece = bucket.piece if bucket else CHUNK_SIZE
        while count > 0:
            n = min(piece, count)
            if bucket:
                bucket.take(n)
            self.send_piece(f, offset, n, relpath)
            offset += n
            count -= n

    def send_piece(self, f: BinaryIO, offset: int, n: int, relpath: str) -> None:
        """Write ``f[offset:offset + n]`` to the socket."""
        done = 0
        while done < n:
            sent = self._send_some(f, offset + done, n - done)
            if sent == 0:  # the file shrank underneath us
                raise ConnectionAbortedError("file ended early")
            done += sent

    # -- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        # A blocking socket: os.sendfile needs it (a socket timeout would make it non-blocking).
        self.request.settimeout(None)
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, Stopping):
            self.close_connection = True
        except OSError:
            if not self.server.owner.stopping.is_set():
                raise
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass  # quiet: the demo's progress display owns the terminal

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._respond(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib naming)
        self._respond(head=True)

    # -- responses ------------------------------------------------------------------------

    def _respond(self, head: bool) -> None:
        self._discard_request_body()
        url_path = unquote(urlsplit(self.path).path)
        relpath = normalize_relpath(url_path)
        if self.before_response(relpath, head):
            return
        path = self.server.owner.resolve(url_path)
        if path is None:
            self.send_simple(404, relpath, head)
            return
        try:
            f = open(path, "rb")
        except OSError:
            self.send_simple(404, relpath, head)
            return
        with f:
            self._send_file(f, os.fstat(f.fileno()), relpath, head)

    def _send_file(self, f: BinaryIO, st: os.stat_result, relpath: str, head: bool) -> None:
        size = st.st_size
        etag = _etag(st)
        status, first, last = 200, 0, size - 1
        range_header = self.headers.get("Range")
        if not head and self.accept_ranges and range_header and size > 0 and self._if_range_matches(etag, st):
            parsed = _parse_range(range_header, size)
            if parsed == "unsatisfiable":
                self.send_simple(416, relpath, head, {"Content-Range": f"bytes */{size}"})
                return
            if isinstance(parsed, tuple):
                status, (first, last) = 206, parsed
        length = last - first + 1 if size > 0 else 0

        self.response_started(relpath, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", _http_date(st.st_mtime))
        if self.accept_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if not head:
            self.send_body(f, first, length, relpath)

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

    def _send_some(self, f: BinaryIO, offset: int, n: int) -> int:
        if _use_sendfile and type(self.request) is socket.socket:  # sendfile needs a plain socket
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

    def send_simple(self, status: int, relpath: str, head: bool, headers: dict[str, str] | None = None) -> None:
        """Send a short text response (``"404 Not Found"``) that keeps the connection alive.

        Parameters
        ----------
        status : int
            HTTP status code.
        relpath : str
            The requested path (passed to ``response_started``).
        head : bool
            Whether the request was HEAD (no body is sent).
        headers : dict, optional
            Extra response headers.
        """
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        body = f"{status} {phrase}\n".encode()
        self.response_started(relpath, status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

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
    handler_class : type, optional
        A subclass of :class:`StaticFileHandler` that adds behaviour through its hooks.

    Attributes
    ----------
    root : pathlib.Path
        The served folder (resolved).
    port : int
        The listening port (known once started; 0 before).
    stopping : threading.Event
        Set while the server stops; handlers that wait should wait on it.
    ignored_errors : tuple of type
        Errors of one connection that are not reported (a client that went away).

    Raises
    ------
    NotADirectoryError
        If ``root`` is not an existing folder.
    """

    ignored_errors: tuple[type[BaseException], ...] = (ConnectionError, Stopping)

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float | None = None,
        handler_class: type[StaticFileHandler] = StaticFileHandler,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {root}")
        self.host = host
        self._requested_port = int(port)
        self.port = self._requested_port
        self.rate_limit = float(rate_limit) if rate_limit else None
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must be positive")
        self.handler_class = handler_class
        self.stopping = threading.Event()
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
        self.stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self, self.handler_class)
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
        """Stop serving: close the listener and every open connection, wake waiting handlers."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
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
    def scheme(self) -> str:
        """``"http"``; a subclass serving TLS says ``"https"``."""
        return "http"

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. ``"http://127.0.0.1:40123/"``."""
        if self.port == 0:
            raise RuntimeError("the server has not been started, its port is not known yet")
        return f"{self.scheme}://{self.host}:{self.port}/"

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
        return self.url + quote(normalize_relpath(relpath))

    def resolve(self, url_path: str) -> Path | None:
        """The regular file a decoded URL path names, or None (escaping, missing, folder).

        Parameters
        ----------
        url_path : str
            The decoded path of a request URL, e.g. ``"/nircam/darks/raw/A1/x.fits.gz"``.

        Returns
        -------
        pathlib.Path or None
        """
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
