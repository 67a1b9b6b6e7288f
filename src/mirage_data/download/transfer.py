"""Moving bytes: resumable, ranged, retried HTTP(S) downloads and local-mirror reads.

A remote file is downloaded into a *partial file* below ``MIRAGE_DATA/.mirage-data/partial``
(same filesystem as the layout), beside a small JSON record of the byte ranges already on disk
and the server's validators (ETag, Last-Modified, length). Several connections may fill
different ranges of one partial file at once; a `StreamReader` follows the contiguous
prefix so that decompression and hashing run while the download is still going.

After an interruption (Ctrl-C, kill -9, dropped link, restart) the next run reads the record,
asks the server for the missing ranges only, with ``If-Range`` so that a file that changed on
the server is restarted cleanly, as it is when the server ignores ``Range``.

Nothing here knows about the Mirage layout; `fetch` decides what to download and `install`
what to do with the bytes.
"""

from __future__ import annotations

import errno
import http.client
import math
import random
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter

from mirage_data.units import format_size

from .partial import Cancelled, PartialFile, StreamRestarted, missing_ranges, split_ranges

CHUNK = 1 << 20  # bytes per socket read and per write; large enough to keep Python overhead low


class TransferError(Exception):
    """A file could not be fetched. ``permanent`` is True when retrying will not help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TransferOptions:
    """How files are fetched.

    Parameters
    ----------
    jobs : int
        Files fetched at once.
    connections : int
        Connections per file, for files of at least ``2 * segment_size`` bytes on servers that
        accept byte ranges.
    segment_size : int
        Smallest range (bytes) worth a connection of its own.
    connect_timeout, read_timeout : float
        Seconds to wait for a connection, and for the next bytes of a stalled response.
    retries : int
        Attempts after a transient failure (reset, timeout, 5xx, 429) before a file fails;
        the count restarts whenever an attempt made progress.
    backoff : float
        Base of the exponential backoff in seconds (``backoff * 2**n``, with jitter, capped
        at ``max_backoff``).
    max_retry_after : float
        Longest wait (seconds) a server's ``Retry-After`` header may ask for; longer asks
        are cut to this.
    verify_tls : bool or str
        Verify TLS certificates (default), or a CA bundle path. Proxies come from the usual
        ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` environment variables.
    """

    jobs: int = 4
    connections: int = 4
    segment_size: int = 8 << 20
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    verify_tls: bool | str = True

    def __post_init__(self) -> None:
        for name in ("jobs", "connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be a whole number from 1 to 64; got {value!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number, 0 or more; got {self.retries!r}")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not _is_number(value) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not _is_number(value) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds, 0 or more; got {value!r}")
        if isinstance(self.segment_size, bool) or not isinstance(self.segment_size, int) or self.segment_size < 1:
            raise ValueError(f"segment_size must be a positive whole number of bytes; got {self.segment_size!r}")
        if not isinstance(self.verify_tls, (bool, str)):
            raise ValueError(f"verify_tls must be True, False or a CA bundle path; got {self.verify_tls!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Attempts at a server that refuses connections: one retry covers a server just restarting;
#: more would only make a wrong mirror URL take minutes to report.
REFUSED_ATTEMPTS = 2


class DiskFull(TransferError):
    """No space left where the download is written (never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def _causes(exc: BaseException) -> list[BaseException]:
    """*exc* and what it wraps (requests and urllib3 nest their errors several levels deep)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        for attr in ("reason", "__cause__", "__context__"):
            inner = getattr(e, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    return seen


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) for e in _causes(exc))


def _disk_full(exc: BaseException) -> OSError | None:
    for e in _causes(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
    return None


# --------------------------------------------------------------------------- byte ranges


class StreamReader:
    """A read-only file object over a growing `PartialFile`: ``read`` blocks until bytes are
    downloaded. Counts and optionally hashes what it returns."""

    def __init__(self, partial: PartialFile, cancel: threading.Event, hasher=None) -> None:
        self.partial, self.cancel, self.hasher = partial, cancel, hasher
        self.generation = partial.generation
        self.position = 0
        self._available = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        if self.position >= self._available:
            self._available = self.partial.wait_for(self.position, self.cancel, self.generation)
            if self._available <= self.position:
                return b""
        want = min(n, self._available - self.position)
        data = self.partial.read(self.position, want)
        if len(data) < want:
            if self.partial.generation != self.generation:
                raise StreamRestarted()
            raise OSError(f"{self.partial.path} is shorter than its record says")
        self.position += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        return data


class LocalReader:
    """A file object over a file of a local or network-share mirror, counting and hashing."""

    def __init__(self, path: Path, cancel: threading.Event, hasher=None, on_bytes=None) -> None:
        self._file = open(path, "rb")
        self.cancel, self.hasher, self.on_bytes = cancel, hasher, on_bytes
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.cancel.is_set():
            raise Cancelled()
        data = self._file.read(CHUNK if n is None or n < 0 else n)
        self.position += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- HTTP


_local = threading.local()


def _session(options: TransferOptions) -> requests.Session:
    """One session per thread: requests sessions are not thread-safe."""
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        # Byte ranges must address the stored bytes, never a re-encoded body.
        s.headers.update({"Accept-Encoding": "identity", "User-Agent": "mirage-data"})
        _local.session = s
    return s


def _verify(options: TransferOptions) -> dict:
    """The ``verify`` argument of a request. Only an explicit CA bundle or False is passed:
    requests lets REQUESTS_CA_BUNDLE override a session's setting, but not a request's."""
    return {} if options.verify_tls is True else {"verify": options.verify_tls}


_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _check_status(response: requests.Response, url: str) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    if code in _TRANSIENT_STATUS or code >= 500:
        err = TransferError(f"HTTP {code} {response.reason} from {url}")
        err.retry_after = _retry_after(response)  # type: ignore[attr-defined]
        raise err
    hint = {404: "the file is not on the server (wrong mirror?)", 403: "access refused", 401: "authentication needed"}
    raise TransferError(
        f"HTTP {code} {response.reason} for {url}" + (f": {hint[code]}" if code in hint else ""),
        permanent=True,
    )


class _RestartNeeded(Exception):
    """The server sent the whole file where a range was asked for (changed or no ranges)."""


@dataclass
class RemoteInfo:
    size: int | None
    accepts_ranges: bool
    etag: str | None
    last_modified: str | None


class HttpDownload:
    """Download one URL into a `PartialFile`, resuming, with several connections and retries.

    ``run()`` blocks until the file is complete (or raises `TransferError`/`Cancelled`); run it
    on a thread and read the bytes concurrently with a `StreamReader`.
    """

    def __init__(
        self,
        url: str,
        partial: PartialFile,
        options: TransferOptions,
        cancel: threading.Event,
        on_bytes: Callable[[int], None] | None = None,
        on_info: Callable[[int | None, int], None] | None = None,
    ) -> None:
        self.url, self.partial, self.options, self.cancel = url, partial, options, cancel
        self.on_bytes = on_bytes or (lambda n: None)
        self.on_info = on_info or (lambda size, already: None)
        self.bytes_received = 0
        self._abort = threading.Event()

    # -- retry loop -----------------------------------------------------------------------
    def _attempts(self, what: Callable[[], None]) -> None:
        """Run *what* until it succeeds, retrying transient failures with backoff. A full disk
        is never retried; a refused connection is retried once, soon."""
        failures = refusals = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            before = self.bytes_received
            try:
                what()
                return
            except (_RestartNeeded, Cancelled):
                raise
            except TransferError as exc:
                if exc.permanent:
                    raise
                delay = getattr(exc, "retry_after", None)
                err: Exception = exc
            except requests.exceptions.SSLError as exc:
                # A certificate that fails today fails on every retry too.
                raise TransferError(
                    f"TLS certificate verification failed for {self.url} ({_describe(exc)}); if your site "
                    "uses its own certificate authority, point REQUESTS_CA_BUNDLE at its CA bundle",
                    permanent=True,
                ) from None
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                # Raw body reads raise urllib3's errors (reset, timeout, short body) unwrapped.
                full = _disk_full(exc)
                if full is not None:
                    raise self._disk_full_error(full) from None
                if _refused(exc):
                    refusals += 1
                    if refusals >= REFUSED_ATTEMPTS:
                        raise TransferError(
                            f"connection refused by {self.url} ({refusals} attempts); check the mirror URL "
                            "and that its server is running",
                            permanent=True,
                        ) from None
                    if self.cancel.wait(min(1.0, self.options.backoff)):
                        raise Cancelled() from None
                    continue
                delay, err = None, exc
            if self.bytes_received - before >= CHUNK:
                failures = 0  # progress was made: this link is slow, not dead
            failures += 1
            if failures > self.options.retries:
                raise TransferError(
                    f"giving up on {self.url} after {failures} failed attempts: {_describe(err)}"
                ) from err
            backoff = min(self.options.max_backoff, self.options.backoff * 2 ** (failures - 1))
            # Jitter spreads the retries of parallel connections apart.
            wait = min(self.options.max_retry_after, delay) if delay is not None else backoff * random.uniform(0.5, 1.5)
            if self.cancel.wait(wait):
                raise Cancelled()

    def _disk_full_error(self, exc: OSError) -> DiskFull:
        folder = self.partial.path.parent
        free = _free_bytes(folder)
        need = f"{_size(self.partial.size)} for this file" if self.partial.size else "more space"
        return DiskFull(
            f"disk full: no space left in {folder} ({_size(free)} free) while downloading {self.url}; "
            f"it needs {need}; free some space or download to another folder"
        )

    # -- requests -------------------------------------------------------------------------
    def _probe(self) -> RemoteInfo:
        info: list[RemoteInfo] = []

        def head() -> None:
            s = _session(self.options)
            r = s.head(self.url, allow_redirects=True, timeout=self._timeout(), **_verify(self.options))
            if r.status_code in (405, 501):  # HEAD not allowed: learn nothing, stream with GET
                info.append(RemoteInfo(None, False, None, None))
                return
            _check_status(r, self.url)
            length = r.headers.get("Content-Length")
            info.append(
                RemoteInfo(
                    size=int(length) if length and length.isdigit() else None,
                    accepts_ranges=r.headers.get("Accept-Ranges", "").lower() == "bytes",
                    etag=r.headers.get("ETag"),
                    last_modified=r.headers.get("Last-Modified"),
                )
            )

        self._attempts(head)
        return info[0]

    def _timeout(self) -> tuple[float, float]:
        return (self.options.connect_timeout, self.options.read_timeout)

    def _fetch_range(self, start: int, end: int | None, ranged: bool) -> None:
        """GET bytes [start, end) (or the whole body) and write them; raises on short bodies."""
        s = _session(self.options)
        headers = {}
        if ranged:
            headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
            validator = self.partial.etag or self.partial.last_modified
            if validator and not (self.partial.etag or "").startswith("W/"):
                headers["If-Range"] = validator
        with s.get(self.url, headers=headers, stream=True, timeout=self._timeout(), **_verify(self.options)) as r:
            _check_status(r, self.url)
            if ranged and r.status_code == 200:
                raise _RestartNeeded()
            if r.status_code == 206:
                content_range = r.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {start}-"):
                    raise TransferError(f"unexpected Content-Range {content_range!r} from {self.url}")
            pos = start
            for chunk in r.raw.stream(CHUNK, decode_content=False):
                if self.cancel.is_set() or self._abort.is_set():
                    raise Cancelled()
                if end is not None and pos + len(chunk) > end:
                    chunk = chunk[: end - pos]
                self.partial.write(pos, chunk)
                pos += len(chunk)
                self.bytes_received += len(chunk)
                self.on_bytes(len(chunk))
                if end is not None and pos >= end:
                    break
            expected_end = end if end is not None else self.partial.size
            if expected_end is not None and pos < expected_end:
                raise TransferError(
                    f"connection closed after {pos - start} bytes of {expected_end - start} ({self.url})"
                )

    def _fetch_missing(self, ranged: bool) -> None:
        """Fetch every missing range with up to ``connections`` threads."""
        size = self.partial.size
        assert size is not None
        todo = missing_ranges(self.partial.done, size)
        if not todo:
            return
        connections = self.options.connections if ranged else 1
        segments = split_ranges(todo, connections, self.options.segment_size) if ranged else todo
        errors: list[BaseException] = []
        lock = threading.Lock()
        queue = list(segments)

        def worker() -> None:
            while True:
                with lock:
                    if errors or not queue:
                        return
                    seg = queue.pop(0)
                try:
                    # Each retry resumes from what that segment already has on disk.
                    def attempt(seg=seg) -> None:
                        for a, b in missing_ranges(self.partial.done, size):
                            lo, hi = max(a, seg[0]), min(b, seg[1])
                            if lo < hi:
                                self._fetch_range(lo, hi, ranged)

                    self._attempts(attempt)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                    with lock:
                        errors.append(exc)
                    self._abort.set()  # the other connections stop too
                    return

        self._abort.clear()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(connections, len(segments)))]
        for t in threads[1:]:
            t.start()
        worker()  # this thread works too
        for t in threads[1:]:
            t.join()
        try:
            self.partial.save()
        except OSError:
            if not errors:  # else report the first error (a full disk fails the save too)
                raise
        if errors:
            restart = [e for e in errors if isinstance(e, _RestartNeeded)]
            raise restart[0] if restart else errors[0]

    def run(self) -> None:
        info = self._probe()
        p = self.partial
        resumable = (
            p.done
            and info.size is not None
            and info.accepts_ranges
            and p.size == info.size
            and (p.etag == info.etag if (p.etag or info.etag) else p.last_modified == info.last_modified)
        )
        p.size, p.etag, p.last_modified = info.size, info.etag, info.last_modified
        p.open(restart=not resumable)
        self.on_info(info.size, p.prefix() if resumable else 0)
        for _ in range(3):  # a file that keeps changing under us is an error, not a loop
            try:
                if info.size is not None and info.accepts_ranges:
                    self._fetch_missing(ranged=True)
                else:
                    self._attempts(self._stream_whole)
                return
            except _RestartNeeded:
                # Changed on the server, or Range ignored: start again from byte 0, re-probing.
                info = self._probe()
                p.size, p.etag, p.last_modified = info.size, info.etag, info.last_modified
                p.restart()
                self.on_info(info.size, 0)
        raise TransferError(f"{self.url} changed on the server during the download three times; try again later")

    def _stream_whole(self) -> None:
        """One GET of the whole body (servers without ranges); restarts from 0 on failure."""
        if self.partial.done:
            self.partial.restart()
            self.on_info(self.partial.size, 0)
        self._fetch_range(0, None, ranged=False)
        if self.partial.size is None:
            self.partial.mark_stream_complete()


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    return "unknown" if n is None else format_size(n)


def _describe(exc: BaseException) -> str:
    """A short, plain account of a transfer error (urllib3 and requests nest theirs)."""
    seen = _causes(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused"  # urllib3 files it under timeouts
    for e in seen:
        if isinstance(e, http.client.IncompleteRead):
            got = e.partial if isinstance(e.partial, int) else len(e.partial)  # urllib3: an int
            return f"connection closed early ({got} bytes read, {e.expected} more expected)"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return "timed out (no data from the server)"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or "certificate verify failed"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
