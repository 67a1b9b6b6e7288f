"""Checking that a file is what the catalog says it is, before it is installed.

The real collection publishes no sizes or checksums, so a matching gzip CRC only proves that
the bytes arrived as sent, not that the server sent the right thing. Every file is therefore
followed as it streams: FITS files header by header (headers parsed, data only counted, never
loaded), so that a dark is refused as soon as its primary header names another detector, its
headers are not those of its kind, or more bytes arrive than its headers declare (which also
bounds decompression: a gzip bomb stops at the first block the headers do not account for).

`check_for` chooses the check of a file from its catalog entry (darks) or its name and group
(tarball members); `check_file` runs a check on a file already on disk (linked or adopted),
reading its headers and seeking over the data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

BLOCK = 2880  # FITS logical record
CARD = 80
#: Longest FITS header accepted (blocks): real headers are a few blocks; junk must not pile up.
MAX_HEADER_BLOCKS = 200
#: Largest decompressed/compressed ratio accepted. The sample collection's files are at most
#: 25x (cosmic-ray stamps, mostly zeros); a stream of zeros gzips about 1000x.
MAX_RATIO = 200
#: Decompressed output always allowed, whatever the compressed size (small files).
MIN_ALLOWANCE = 64 << 20

INSTRUME = {"nircam": "NIRCAM", "niriss": "NIRISS", "fgs": "FGS"}


class WrongContent(Exception):
    """The bytes arrived intact but are not the file the catalog names (refused, not retried)."""


def allowance(compressed_size: int | None) -> int | None:
    """Most decompressed bytes accepted from *compressed_size* compressed bytes (None: no bound).

    >>> allowance(1_000_000) == 200_000_000
    True
    """
    if compressed_size is None:
        return None
    return max(MIN_ALLOWANCE, MAX_RATIO * compressed_size)


def describe_start(data: bytes) -> str:
    """What the first bytes of a file that should be FITS (or gzip) look like, for messages.

    >>> describe_start(b"<!DOCTYPE html><html><body>Not found</body></html>")
    'the server sent an HTML page'
    >>> describe_start(bytes(100))
    'the file is all zero bytes'
    """
    head = data[:2048].lstrip()
    low = head.lower()
    if low.startswith(b"<") and (b"<html" in low or b"<!doctype" in low or b"<head" in low or b"<body" in low):
        return "the server sent an HTML page"
    if low.startswith(b"<?xml") or low.startswith(b"<"):
        return "the server sent an XML/HTML document"
    if low.startswith((b"{", b"[")):
        return "the server sent a JSON document"
    if data.startswith(b"SIMPLE  ="):
        return "the file is FITS, not gzip-compressed"
    if data[:2] == b"\x1f\x8b":
        return "the file is gzip-compressed once more"
    if data and not data.strip(b"\0"):
        return "the file is all zero bytes"
    return f"the file is not FITS (it begins {data[:24]!r})"


def _norm_detector(instrument: str, value: str) -> str:
    """One spelling per detector: NRCA5 and NRCALONG, A5 and nrca5 are the same."""
    v = str(value).strip().upper()
    if instrument == "nircam":
        v = v.removeprefix("NRC").replace("LONG", "5")
    if instrument == "fgs":  # WebbPSF and Mirage's PSF search spell the guiders FGS1/FGS2
        v = v.replace("FGS", "GUIDER")
    return v


@dataclass
class Hdu:
    """One HDU as seen in the stream: its header cards (key -> value) and data size (bytes)."""

    index: int
    header: dict
    data_bytes: int

    @property
    def name(self) -> str:
        return str(self.header.get("EXTNAME", "PRIMARY" if self.index == 0 else "")).strip().upper()

    @property
    def shape(self) -> tuple[int, ...]:
        n = int(self.header.get("NAXIS", 0))
        return tuple(int(self.header.get(f"NAXIS{i}", 0)) for i in range(n, 0, -1))

    @property
    def bitpix(self) -> int:
        return int(self.header.get("BITPIX", 0))


_CARD = re.compile(r"^([A-Z0-9_\-]{1,8})\s*= +(.*)$")


def _parse_value(text: str):
    text = text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and text[end + 1 : end + 2] == "'":  # '' is a quote inside the string
            end = text.find("'", end + 2)
        return text[1:end].replace("''", "'").rstrip() if end != -1 else text[1:]
    value = text.split("/", 1)[0].strip()
    if value in ("T", "F"):
        return value == "T"
    try:
        return int(value)
    except ValueError:
        try:
            return float(value.replace("D", "E"))
        except ValueError:
            return value


def parse_header(raw: bytes) -> dict:
    """Keyword values of a FITS header (bytes up to and including the END card)."""
    cards = {}
    for i in range(0, len(raw), CARD):
        card = raw[i : i + CARD].decode("ascii", "replace")
        key = card[:8].rstrip()
        if key == "END":
            break
        if card[8:10] == "= ":
            cards.setdefault(key, _parse_value(card[10:]))
    return cards


def _data_bytes(header: dict) -> int:
    """Bytes of data an HDU's header declares (before padding to a whole block)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    axes = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if any(a < 0 for a in axes):
        raise WrongContent("a FITS header declares a negative axis length")
    if header.get("GROUPS") is True and axes[0] == 0:  # random groups: NAXIS1 = 0 is no axis
        axes = axes[1:]
    count = 1
    for a in axes:
        count *= a
    bits = abs(int(header.get("BITPIX", 8)))
    if bits not in (8, 16, 32, 64):
        raise WrongContent(f"a FITS header declares BITPIX {header.get('BITPIX')}")
    return bits // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


@dataclass
class FitsCheck:
    """Follows a FITS file's structure as its bytes pass, without keeping the data.

    Feed the bytes in order (`feed`), then call `finish`. Raises `WrongContent` as soon as
    the bytes cannot be the file: not FITS, a header rejected by *on_header*, more bytes than
    the headers declare, or (at `finish`) a file that ends inside an HDU or lacks what
    *on_finish* requires.

    Parameters
    ----------
    what : str
        Names the file in messages ("dark", "PSF library file ...").
    on_header : callable, optional
        Called with each `Hdu` as soon as its header is complete.
    on_finish : callable, optional
        Called with the list of `Hdu` at the end.
    limit : int or callable, optional
        Most bytes the file may have in all (for example from the compressed size), or a
        callable giving it when the first header is complete.
    """

    what: str
    on_header: Callable[[Hdu], None] | None = None
    on_finish: Callable[[list[Hdu]], None] | None = None
    limit: int | Callable[[], int | None] | None = None
    hdus: list[Hdu] = field(default_factory=list)
    total: int = 0
    _header: bytearray = field(default_factory=bytearray)
    _data_left: int = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._data_left:
                take = min(self._data_left, len(view) - pos)
                self._data_left -= take
                pos += take
                self.total += take
                continue
            take = min(BLOCK - len(self._header) % BLOCK, len(view) - pos)
            self._header += view[pos : pos + take]
            pos += take
            self.total += take
            if len(self._header) % BLOCK == 0:
                self._header_block()

    def _header_block(self) -> None:
        raw = bytes(self._header)
        if len(raw) == BLOCK:  # the first block of an HDU says what it is
            if (not self.hdus and not raw.startswith(b"SIMPLE  =")) or (self.hdus and not raw.startswith(b"XTENSION=")):
                if self.hdus:
                    raise WrongContent(
                        f"{self.what}: bytes follow its last HDU that are not a FITS extension "
                        f"(after {self.total - BLOCK} bytes the headers account for; {describe_start(raw)})"
                    )
                raise WrongContent(f"{self.what}: {describe_start(raw)}")
            try:
                raw.decode("ascii")
            except UnicodeDecodeError:
                raise WrongContent(f"{self.what}: a FITS header holds non-ASCII bytes") from None
        last = raw[-BLOCK:]
        if not any(last[i : i + 8] == b"END     " for i in range(0, BLOCK, CARD)):
            if len(raw) >= MAX_HEADER_BLOCKS * BLOCK:
                raise WrongContent(f"{self.what}: a FITS header runs past {MAX_HEADER_BLOCKS} blocks without END")
            return
        header = parse_header(raw)
        try:
            hdu = Hdu(len(self.hdus), header, _data_bytes(header))
        except (ValueError, TypeError):
            raise WrongContent(f"{self.what}: a FITS header has a malformed NAXIS, BITPIX, PCOUNT or GCOUNT") from None
        self._header = bytearray()
        self._data_left = _padded(hdu.data_bytes)
        limit = self.limit() if callable(self.limit) else self.limit
        if limit is not None and self.total + self._data_left > limit:
            raise WrongContent(
                f"{self.what}: its headers declare {self.total + self._data_left} bytes, more than the "
                f"{limit} its compressed size allows (a decompression bomb?)"
            )
        self.hdus.append(hdu)
        if self.on_header is not None:
            self.on_header(hdu)

    def skip(self, n: int) -> None:
        """Account for *n* data bytes not fed (seeked over in a file on disk)."""
        n = min(n, self._data_left)
        self._data_left -= n
        self.total += n

    def finish(self) -> None:
        if not self.hdus:
            if not bytes(self._header).startswith(b"SIMPLE  ="):
                raise WrongContent(f"{self.what}: {describe_start(bytes(self._header))}")
            raise WrongContent(f"{self.what}: ends after {self.total} bytes, before its first FITS header is complete")
        if self._header:
            raise WrongContent(f"{self.what}: ends inside a FITS header (truncated?)")
        if self._data_left:
            raise WrongContent(
                f"{self.what}: its headers declare {self.total + self._data_left} bytes but the file has "
                f"{self.total} (truncated?)"
            )
        if self.on_finish is not None:
            self.on_finish(self.hdus)


class PassCheck:
    """The check of a file with no known structure: only that it is not an error page."""

    def __init__(self, what: str, magic: bytes = b"") -> None:
        self.what = what
        self.magic = magic
        self.total = 0
        self._head = b""

    def feed(self, data: bytes) -> None:
        if len(self._head) < 64:
            self._head += bytes(data[: 64 - len(self._head)])
            if len(self._head) >= 64:
                self._judge()
        self.total += len(data)

    def _judge(self) -> None:
        if self.magic and not self._head.startswith(self.magic):
            raise WrongContent(f"{self.what}: {describe_start(self._head)} (expected it to begin {self.magic!r})")
        if not self.magic and describe_start(self._head).startswith("the server sent"):
            raise WrongContent(f"{self.what}: {describe_start(self._head)}")

    def finish(self) -> None:
        self._judge()


# ---------------------------------------------------------------------------- kinds


def dark_check(entry, limit: int | None = None) -> FitsCheck:
    """The check of a dark (`CatalogEntry` with a dark kind): FITS, INSTRUME and DETECTOR of
    the entry, the extensions of a raw or a linearized dark, sizes as the headers declare."""
    what = f"{entry.dark_kind} dark {entry.name}"
    instrument = entry.instrument

    def primary(hdu: Hdu) -> None:
        if hdu.index != 0:
            return
        got = str(hdu.header.get("INSTRUME", "")).strip().upper()
        if got != INSTRUME[instrument]:
            raise WrongContent(f"{what}: INSTRUME is {got or 'missing'}, expected {INSTRUME[instrument]}")
        if entry.detector is not None:
            from mirage_data.collection.catalog import crds_detector_name

            expected = crds_detector_name(instrument, entry.detector)
            det = str(hdu.header.get("DETECTOR", "")).strip().upper()
            if _norm_detector(instrument, det) != _norm_detector(instrument, expected):
                raise WrongContent(f"{what}: DETECTOR is {det or 'missing'}, expected {expected}")

    def structure(hdus: list[Hdu]) -> None:
        by_name = {h.name: h for h in hdus}
        sci = by_name.get("SCI")
        if sci is None:
            raise WrongContent(f"{what}: has no SCI extension (HDUs: {', '.join(h.name or '?' for h in hdus)})")
        if len(sci.shape) not in (3, 4) or 0 in sci.shape:
            raise WrongContent(f"{what}: SCI has shape {sci.shape}, expected (nints, ngroups, ny, nx)")
        if entry.dark_kind == "linearized":
            if "SBANDREFPIX" not in by_name:
                raise WrongContent(f"{what}: has no SBANDREFPIX extension, so it is not a linearized dark")
            for name in ("SCI", "SBANDREFPIX"):
                h = by_name[name]
                if h.bitpix > 0:
                    raise WrongContent(f"{what}: {name} holds integers (BITPIX {h.bitpix}), expected float32")
            if by_name["SBANDREFPIX"].shape != sci.shape:
                raise WrongContent(f"{what}: SBANDREFPIX shape {by_name['SBANDREFPIX'].shape} differs from SCI")
        for name in ("ZEROFRAME", "ZEROSBANDREFPIX"):
            h = by_name.get(name)
            if h is not None and h.shape and h.shape[-2:] != sci.shape[-2:]:
                raise WrongContent(f"{what}: {name} frames {h.shape[-2:]} differ from SCI's {sci.shape[-2:]}")

    return FitsCheck(what, primary, structure, limit)


def _member_fits_check(instrument: str, group: str, detectors: tuple[str, ...], name: str, limit) -> FitsCheck:
    what = f"{name}"
    base = PurePosixPath(name).name

    def need(header: dict, keys: tuple[str, ...], where: str) -> None:
        # Mirage falls back to DET_NAME where DETECTOR is missing (psf_selection.py).
        missing = [k for k in keys if k not in header and not (k == "DETECTOR" and "DET_NAME" in header)]
        if missing:
            raise WrongContent(f"{what}: {where} lacks {', '.join(missing)}, which Mirage reads")

    def instrument_and_detector(header: dict) -> None:
        got = str(header.get("INSTRUME", "")).strip().upper()
        if got != INSTRUME[instrument]:
            raise WrongContent(f"{what}: INSTRUME is {got or 'missing'}, expected {INSTRUME[instrument]}")
        if detectors:
            det = str(header.get("DETECTOR", header.get("DET_NAME", ""))).strip().upper()
            known = {_norm_detector(instrument, d) for d in detectors}
            if _norm_detector(instrument, det) not in known:
                raise WrongContent(f"{what}: DETECTOR is {det or 'missing'}, expected one of {', '.join(detectors)}")

    def finish(hdus: list[Hdu]) -> None:
        primary = hdus[0]
        # Mirage confirms a library by the header where it reads the PSFs: PRIMARY for cores,
        # DET_DIST for wings; OPD_FILE it reads unconditionally (MIRAGE_USAGE.md section 2.2).
        if group == "psf_library":
            keys = ("INSTRUME", "DETECTOR", "FILTER", "OPD_FILE", "OVERSAMP", "DET_YX0")
            need(primary.header, keys, "its primary header")
            instrument_and_detector(primary.header)
            if len(primary.shape) not in (2, 3):
                raise WrongContent(f"{what}: primary data has shape {primary.shape}, expected (n_psf, ny, nx)")
        elif group == "psf_wings":
            wings = [h for h in hdus if h.name == "DET_DIST"]
            if not wings or len(wings[0].shape) != 2:
                raise WrongContent(f"{what}: has no 2-D DET_DIST extension, where Mirage reads PSF wings")
            header = {**primary.header, **wings[0].header}
            need(header, ("INSTRUME", "DETECTOR", "FILTER", "OPD_FILE"), "its DET_DIST header")
            instrument_and_detector(header)
        elif group == "cosmic_ray_library" and base.startswith("CRs_"):
            if len(hdus) < 2 or len(hdus[1].shape) != 3:
                raise WrongContent(f"{what}: extension 1 is not a cube of cosmic-ray stamps (m, ny, nx)")

    return FitsCheck(what, None, finish, limit)


def check_for(entry, member: str | None = None, limit: int | None = None):
    """The check of a collection file (*entry*) or of one member of its tarball (*member*,
    its path in the layout). Darks and FITS members get a `FitsCheck`; ``.npy`` and ``.asdf``
    members their magic bytes; anything else only that it is not an HTML page."""
    if member is None:
        if entry.is_dark:
            return dark_check(entry, limit)
        return PassCheck(entry.name)
    name = PurePosixPath(member).name.lower()
    if name.endswith((".fits", ".fit")):
        # Any of the instrument's detectors: tarballs of one instrument share their folder.
        from mirage_data.collection.catalog import DETECTORS

        return _member_fits_check(entry.instrument, entry.group, DETECTORS[entry.instrument], member, limit)
    if name.endswith(".npy"):
        return PassCheck(member, b"\x93NUMPY")
    if name.endswith(".asdf"):
        return PassCheck(member, b"#ASDF")
    return PassCheck(member)


def check_file(path: str | os.PathLike, check) -> None:
    """Run *check* on a file on disk: FITS headers are read, the data is seeked over, and the
    file's size must be what its headers declare."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if not isinstance(check, FitsCheck):
            check.feed(f.read(64))
            check.total = size
            check.finish()
            return
        while check.total < size:
            if check._data_left:  # skip the data: only its length matters here
                skip = min(check._data_left, size - check.total)
                f.seek(skip, os.SEEK_CUR)
                check.skip(skip)
                continue
            block = f.read(BLOCK)
            if not block:
                break
            check.feed(block)
    check.finish()


def installed_digest(entry, files) -> str:
    """The pinnable digest of what a collection file installed (`InstalledFile` list): the
    installed file's sha256 for a single file at its own place (a dark), else the sha256 of
    the sorted lines ``path<TAB>size<TAB>sha256`` of every file (an archive)."""
    files = list(files)
    if len(files) == 1 and not entry.is_archive:
        return files[0].sha256
    import hashlib

    lines = "".join(f"{f.path}\t{f.size}\t{f.sha256}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()
