"""A loopback server that misbehaves on purpose and keeps a log: the tests' and benchmarks' server.

:class:`FaultyServer` is the product's :class:`~mirage_data.testing.server.CollectionServer`
with :class:`FaultyHandler`, which uses the static server's hooks to add:

* fault injection: per-file queues of :class:`Fault` (connection resets, truncated bodies,
  error statuses, stalls, files that change between attempts), one taken by each GET;
* a request log (:class:`RequestRecord`, with the server-side order of response starts and
  ends in :attr:`FaultyServer.events`) and body byte counts, also as JSON at
  :data:`STATS_PATH` for a server in another process;
* first-byte latency, a mode without range support, and HTTPS;
* serving from a process of its own (:func:`serve_in_subprocess`, ``python -m
  support.faulty_server ROOT``), so that the server does not share the client's GIL.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import BinaryIO

from mirage_data.io.atomic import atomic_write_bytes
from mirage_data.testing.server import CollectionServer, StaticFileHandler, Stopping, normalize_relpath

__all__ = ["STATS_PATH", "Fault", "FaultyServer", "RequestRecord", "main", "serve_in_subprocess"]

#: Path of the JSON statistics endpoint (not counted in the statistics).
STATS_PATH = "_loopback/stats"

_FAULT_KINDS = ("reset", "truncate", "status", "stall", "change_after")


@dataclass(frozen=True)
class Fault:
    """One injected failure of one GET response; build it with a constructor classmethod.

    ``Fault.reset(after_bytes)``: headers as usual (full ``Content-Length``), ``after_bytes`` of
    body, then the TCP connection is aborted with RST. ``Fault.truncate(after_bytes)``: only
    ``after_bytes`` of a body declared full length, then a clean close (FIN).
    ``Fault.status(code, retry_after=None)``: the reply is status ``code`` (with
    ``Retry-After`` when given). ``Fault.stall(after_bytes, seconds)``: ``after_bytes`` of body,
    silence for ``seconds``, then a close. ``Fault.change_after(after_bytes, new_content)``:
    ``after_bytes`` of body, then the file is atomically replaced by ``new_content`` (new
    ``ETag``) and the connection is aborted.

    ``after_bytes`` counts bytes of that response's body, whatever range was requested.
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
        return cls("reset", after_bytes=int(after_bytes))

    @classmethod
    def truncate(cls, after_bytes: int) -> Fault:
        return cls("truncate", after_bytes=int(after_bytes))

    @classmethod
    def status(cls, code: int, retry_after: int | str | None = None) -> Fault:
        return cls("status", code=int(code), retry_after=retry_after)

    @classmethod
    def stall(cls, after_bytes: int, seconds: float) -> Fault:
        return cls("stall", after_bytes=int(after_bytes), seconds=float(seconds))

    @classmethod
    def change_after(cls, after_bytes: int, new_content: bytes) -> Fault:
        return cls("change_after", after_bytes=int(after_bytes), new_content=bytes(new_content))


@dataclass(frozen=True)
class RequestRecord:
    """One answered request (recorded when its status line is sent).

    ``path`` is the decoded URL path without its leading slash; ``range`` and ``if_range`` are
    the request's headers verbatim; ``fault`` is the injected fault it consumed, if any.
    """

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    fault: Fault | None = None


class FaultyHandler(StaticFileHandler):
    """The static handler plus faults, statistics, latency, optional ranges and TLS."""

    server_version = "mirage-loopback-test/1.0"
    _fault: Fault | None = None

    @property
    def accept_ranges(self) -> bool:  # type: ignore[override]
        return self.server.owner.accept_ranges

    def setup(self) -> None:
        self.request.settimeout(None)
        context = self.server.owner.ssl_context
        if context is not None:  # the TLS handshake runs here, on the connection's own thread
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        if self.server.owner.log_requests:
            BaseHTTPRequestHandler.log_message(self, format, *args)

    def before_response(self, relpath: str, head: bool) -> bool:
        owner: FaultyServer = self.server.owner
        if relpath == STATS_PATH:
            self._send_stats(head)
            return True
        self._fault = None if head else owner._pop_fault(relpath)
        if owner.first_byte_latency > 0 and owner.stopping.wait(owner.first_byte_latency):
            raise Stopping
        fault = self._fault
        if fault is not None and fault.kind == "status":
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            self.send_simple(fault.code or 500, relpath, head, headers)
            return True
        return False

    def response_started(self, relpath: str, status: int) -> None:
        record = RequestRecord(
            self.command, relpath, self.headers.get("Range"), self.headers.get("If-Range"), status, self._fault
        )
        self.server.owner._add_record(record)

    def send_simple(self, status: int, relpath: str, head: bool, headers: dict[str, str] | None = None) -> None:
        super().send_simple(status, relpath, head, headers)
        self.server.owner._add_event("end", relpath)

    def send_body(self, f: BinaryIO, offset: int, count: int, relpath: str) -> None:
        owner: FaultyServer = self.server.owner
        fault = self._fault
        if fault is None:
            super().send_body(f, offset, count, relpath)
            owner._add_event("end", relpath)
            return
        super().send_body(f, offset, min(count, fault.after_bytes), relpath)
        self.close_connection = True
        try:
            if fault.kind == "reset":
                self._abort_connection()
            elif fault.kind == "stall":
                if owner.stopping.wait(fault.seconds):
                    raise Stopping
            elif fault.kind == "change_after":
                atomic_write_bytes(owner.root / relpath, fault.new_content or b"")
                self._abort_connection()
            # "truncate": the connection is closed cleanly (FIN) after this request
        finally:
            owner._add_event("end", relpath)

    def send_piece(self, f: BinaryIO, offset: int, n: int, relpath: str) -> None:
        # Counted before sending, so that a client that has the bytes sees them counted; a
        # piece cut short by the client is counted whole (at most one CHUNK_SIZE too many).
        self.server.owner._count(relpath, n)
        super().send_piece(f, offset, n, relpath)

    def _abort_connection(self) -> None:
        """Close the socket now with SO_LINGER 0, so the kernel sends RST instead of FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; the descriptor closes when both are closed.
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.request.close()

    def _send_stats(self, head: bool) -> None:
        body = json.dumps(self.server.owner.stats()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)


class FaultyServer(CollectionServer):
    """:class:`CollectionServer` with faults, a request log and statistics.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to serve.
    rate_limit : float or None, optional
        As for :class:`CollectionServer`.
    first_byte_latency : float, optional
        Seconds to sleep before each response's headers.
    accept_ranges : bool, optional
        When False, ``Range`` and ``If-Range`` are ignored and no ``Accept-Ranges`` is sent.
    ssl_context : ssl.SSLContext, optional
        Serve HTTPS with this server-side context.
    log_requests : bool, optional
        Log each request to stderr.
    **kwargs
        ``host``, ``port``: as for :class:`CollectionServer`.
    """

    ignored_errors = (*CollectionServer.ignored_errors, ssl.SSLError)

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        rate_limit: float | None = None,
        first_byte_latency: float = 0.0,
        accept_ranges: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        log_requests: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(root, rate_limit=rate_limit, handler_class=FaultyHandler, **kwargs)
        self.first_byte_latency = float(first_byte_latency)
        self.accept_ranges = bool(accept_ranges)
        self.ssl_context = ssl_context
        self.log_requests = bool(log_requests)
        self._lock = threading.Condition()
        self._bytes_served = 0
        self._bytes_by_path: dict[str, int] = collections.defaultdict(int)
        self._requests: list[RequestRecord] = []
        self._events: list[tuple[str, str]] = []
        self._faults: dict[str, collections.deque[Fault]] = {}

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    # -- faults ---------------------------------------------------------------------------

    def add_faults(self, relpath: str | os.PathLike[str], *faults: Fault) -> None:
        """Queue faults for ``relpath``; each later GET of it takes the next one (HEAD none)."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults.setdefault(normalize_relpath(relpath), collections.deque()).extend(faults)

    def pending_faults(self, relpath: str | os.PathLike[str]) -> list[Fault]:
        """The faults still queued for ``relpath``."""
        with self._lock:
            return list(self._faults.get(normalize_relpath(relpath), ()))

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
        """Body bytes written to sockets (a piece cut short by the client counts whole)."""
        with self._lock:
            return self._bytes_served

    def bytes_served_for(self, relpath: str | os.PathLike[str]) -> int:
        """Body bytes of the file at ``relpath`` written to sockets."""
        with self._lock:
            return self._bytes_by_path.get(normalize_relpath(relpath), 0)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of answered requests, in the order their responses started."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[tuple[str, str]]:
        """``("start" | "end", path)`` of every response, in server order.

        ``"end"`` comes when the response's last byte was handed to the socket (or its fault
        acted): what happened before, during and after a response, without clocks.
        """
        with self._lock:
            return list(self._events)

    def stats(self) -> dict[str, int]:
        """``{"bytes_served": ..., "requests": ...}`` (what :data:`STATS_PATH` answers)."""
        with self._lock:
            return {"bytes_served": self._bytes_served, "requests": len(self._requests)}

    def reset_stats(self) -> None:
        """Zero the byte counters and forget the log (queued faults stay)."""
        with self._lock:
            self._bytes_served = 0
            self._bytes_by_path.clear()
            self._requests.clear()
            self._events.clear()

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self._bytes_served += n
            self._bytes_by_path[key] += n

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Block until ``predicate(events)`` is true; the timeout only guards against a hang.

        Raises
        ------
        AssertionError
            If it is still false after ``timeout`` seconds.
        """
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(list(self._events)), timeout):
                raise AssertionError(f"server events never satisfied {predicate}: {self._events[-10:]}")

    def _add_record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)
            self._events.append(("start", record.path))
            self._lock.notify_all()

    def _add_event(self, kind: str, relpath: str) -> None:
        with self._lock:
            self._events.append((kind, relpath))
            self._lock.notify_all()


# -- running in a process of its own -----------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m support.faulty_server",
        description="Serve a folder over HTTP/1.1 on 127.0.0.1 until killed (statistics at /_loopback/stats).",
    )
    parser.add_argument("root", metavar="ROOT", help="folder to serve")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--rate-limit", type=float, default=None, metavar="BYTES_PER_S")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="first-byte latency")
    parser.add_argument("--no-ranges", action="store_true", help="ignore Range headers")
    parser.add_argument("--log-requests", action="store_true", help="log requests to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve ``ROOT`` until interrupted; prints ``serving ROOT at URL`` once listening."""
    args = _build_parser().parse_args(argv)
    server = FaultyServer(
        args.root,
        port=args.port,
        rate_limit=args.rate_limit,
        first_byte_latency=args.latency,
        accept_ranges=not args.no_ranges,
        log_requests=args.log_requests,
    )
    with server:
        print(f"serving {args.root} at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
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
    """Run ``python -m support.faulty_server`` in a child process for the ``with`` block.

    Yields the server's base URL (trailing slash); its statistics are at ``<url>_loopback/stats``.
    Raises RuntimeError if the child exits or stays silent before it is listening.
    """
    cmd = [sys.executable, "-m", "support.faulty_server", os.fspath(root), "--port", str(port)]
    if rate_limit:
        cmd += ["--rate-limit", repr(float(rate_limit))]
    if first_byte_latency:
        cmd += ["--latency", repr(float(first_byte_latency))]
    if not accept_ranges:
        cmd.append("--no-ranges")
    if log_requests:
        cmd.append("--log-requests")
    env = dict(os.environ)
    tests_dir = str(Path(__file__).resolve().parent.parent)  # so that ``support`` imports
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
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
