"""Streaming FITS images: read rows of an image extension, write a file by slices.

Reading: `open_layouts` reads every header of an uncompressed FITS file once and returns
where each image's data lie (`ImageLayout`), after checking that the file holds all the data
(and padding) its headers declare; `read_rows` and `read_image` then read rows straight into
native arrays with ``os.preadv`` (no memory map, no second copy).

Writing: `FitsWriter` lays out a primary header and image extensions of known shapes, reserves
the file's whole size, writes the headers first and takes the data later by planes or row
slices, from any thread, in native byte order (converted to FITS's big-endian here). Use
`write_fits` to get one under a temporary name that is renamed into place only if the block
succeeds (`mirage_data.io.atomic.atomic_path`).

>>> import tempfile, pathlib, numpy as np
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.fits"
>>> with write_fits(path, fits.Header(), [ImageSpec("SCI", (2, 3), np.float32)]) as out:
...     out.write_rows("SCI", 0, slice(0, 2), np.arange(6, dtype=np.float32).reshape(2, 3))
>>> fits.getdata(path, "SCI").tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from .atomic import atomic_path

__all__ = [
    "BLOCK",
    "FitsLayoutError",
    "ImageLayout",
    "image_layout",
    "open_layouts",
    "read_rows",
    "read_image",
    "ImageSpec",
    "FitsWriter",
    "write_fits",
]

#: FITS block size (bytes): headers and data are padded to multiples of it.
BLOCK = 2880

_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
# (BITPIX, BZERO) of FITS unsigned integers: stored signed, offset by BZERO
_UNSIGNED = {(16, 32768): np.uint16, (32, 2147483648): np.uint32, (64, 9223372036854775808): np.uint64}


class FitsLayoutError(ValueError):
    """A FITS file that does not hold what its headers declare (e.g. truncated)."""


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ImageLayout:
    """Where and how an image extension's data lie in an uncompressed FITS file.

    Attributes
    ----------
    path : Path
    extname : str
    shape : tuple of int
        numpy order (NAXISn ... NAXIS1).
    offset : int
        Byte offset of the data.
    bitpix, bzero, bscale : int, float, float
    """

    path: Path
    extname: str
    shape: tuple[int, ...]
    offset: int
    bitpix: int
    bzero: float = 0.0
    bscale: float = 1.0

    @property
    def disk_dtype(self) -> np.dtype:
        return np.dtype(_BITPIX[self.bitpix])

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the values (astropy's convention: unsigned where BZERO says so)."""
        unsigned = _UNSIGNED.get((self.bitpix, self.bzero))
        if unsigned is not None and self.bscale == 1:
            return np.dtype(unsigned)
        if self.bzero == 0 and self.bscale == 1:
            return self.disk_dtype.newbyteorder("=")
        return np.dtype(np.float64)

    @property
    def row_bytes(self) -> int:
        return int(self.shape[-1]) * self.disk_dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.disk_dtype.itemsize if self.shape else 0

    @property
    def end(self) -> int:
        """Byte offset just past the data's padding (where the next header starts)."""
        return self.offset + self.nbytes + (-self.nbytes % BLOCK)

    def convert(self, raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Convert on-disk values *raw* into *out* (any dtype), applying BZERO/BSCALE."""
        unsigned = _UNSIGNED.get((self.bitpix, self.bzero))
        if unsigned is not None and self.bscale == 1:
            u = raw.view(raw.dtype.newbyteorder(">").str.replace("i", "u"))
            sign = np.array(1 << (8 * raw.dtype.itemsize - 1), dtype=u.dtype.newbyteorder("="))
            np.bitwise_xor(u, sign, out=out, casting="unsafe")
        elif self.bzero == 0 and self.bscale == 1:
            np.copyto(out, raw, casting="unsafe")
        else:
            np.copyto(out, raw * self.bscale + self.bzero, casting="unsafe")
        return out


def image_layout(hdul: fits.HDUList, index: int) -> ImageLayout:
    """The `ImageLayout` of extension *index* of an open, uncompressed HDU list."""
    hdu = hdul[index]
    h = hdu.header
    naxis = int(h.get("NAXIS", 0))
    shape = tuple(int(h[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
    info = hdul.fileinfo(index)
    return ImageLayout(
        path=Path(info["filename"]),
        extname=str(h.get("EXTNAME", "PRIMARY" if index == 0 else f"#{index}")).strip().upper(),
        shape=shape,
        offset=int(info["datLoc"]),
        bitpix=int(h["BITPIX"]),
        bzero=float(h.get("BZERO", 0)),
        bscale=float(h.get("BSCALE", 1)),
    )


def _data_span(header: fits.Header) -> int:
    """Bytes of data (padding included) that a header declares (FITS standard 4.4.1)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    count = 1
    for k in range(1, naxis + 1):
        count *= int(header[f"NAXIS{k}"])
    nbytes = abs(int(header["BITPIX"])) // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)
    return nbytes + (-nbytes % BLOCK)


def open_layouts(path: str | os.PathLike, names: Sequence[str] = ()) -> tuple[fits.Header, list[str], dict]:
    """Read the headers of a FITS file and check that the file is complete.

    Every HDU's data, padding included, must lie within the file: a file cut anywhere,
    inside any extension or only in its last 2880-byte block, is refused. Only headers are
    read (sizes come from them).

    Parameters
    ----------
    path : path-like
        An uncompressed FITS file.
    names : sequence of str
        EXTNAMEs whose `ImageLayout` to return (those present).

    Returns
    -------
    primary : astropy.io.fits.Header
        A copy of the primary header.
    extnames : list of str
        EXTNAME of every HDU, upper case ('' where none; ``PRIMARY`` first).
    layouts : dict
        EXTNAME -> `ImageLayout` for the *names* present (images only; a table raises).

    Raises
    ------
    FitsLayoutError
        Truncated file, or a requested extension that is not an image.
    OSError
        Not readable as FITS.
    """
    path = Path(path)
    size = path.stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # truncation: checked below, in our words
        hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    try:
        primary = hdul[0].header.copy()
        extnames = [
            str(h.header.get("EXTNAME", "PRIMARY" if i == 0 else "")).strip().upper() for i, h in enumerate(hdul)
        ]
        end = 0
        for i, hdu in enumerate(hdul):
            info = hdul.fileinfo(i)
            end = int(info["datLoc"]) + _data_span(hdu.header)
            if end > size:
                what = extnames[i] or f"HDU {i}"
                raise FitsLayoutError(
                    f"{path} is truncated: {size} bytes, but its {what} data end at byte {end} (headers and "
                    f"data come in whole {BLOCK}-byte blocks)"
                )
        # astropy stops listing HDUs at a header it cannot read whole: a cut inside a header
        with open(path, "rb") as f:
            f.seek(end)
            rest = f.read(BLOCK)
        if rest.strip(b"\0 "):
            raise FitsLayoutError(f"{path} is truncated or damaged after byte {end} (an incomplete header follows)")
        layouts = {}
        for name in names:
            if name in extnames:
                i = extnames.index(name)
                if not isinstance(hdul[i], (fits.ImageHDU, fits.PrimaryHDU)):
                    raise FitsLayoutError(f"{path}: extension {name} is not an image")
                layouts[name] = image_layout(hdul, i)
    finally:
        hdul.close()
    return primary, extnames, layouts


def read_rows(
    fd: int, layout: ImageLayout, first_row: int, out: np.ndarray, buffer: np.ndarray | None = None
) -> np.ndarray:
    """Read consecutive rows (of the flattened leading axes) into *out*.

    Parameters
    ----------
    fd : int
        OS file descriptor of ``layout.path``.
    layout : ImageLayout
    first_row : int
        Index of the first row, counting rows of length ``shape[-1]`` from the start.
    out : ndarray, (nrows, shape[-1]) or anything with that many elements
        Destination, converted to its dtype.
    buffer : ndarray of ``layout.disk_dtype``, optional
        Scratch space of at least ``out.size`` elements (avoids an allocation per call).

    Raises
    ------
    FitsLayoutError
        The file ends before the rows.
    """
    count = out.size
    if buffer is None:
        buffer = np.empty(count, layout.disk_dtype)
    raw = buffer[:count]
    view = memoryview(raw.view(np.uint8))
    start = layout.offset + first_row * layout.row_bytes
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], start + got)
        if n <= 0:
            raise FitsLayoutError(f"{layout.path}: file ends inside the {layout.extname} data (truncated file?)")
        got += n
    layout.convert(raw, out.reshape(-1))
    return out


def read_image(layout: ImageLayout, dtype=None, chunk_bytes: int = 8 << 20, threads: int = 2) -> np.ndarray:
    """Read a whole image extension into a native array, in chunks (no memory map).

    Large images are read by *threads* threads (reading and byte-order conversion release
    the GIL).
    """
    dtype = np.dtype(dtype or layout.dtype)
    out = np.empty(layout.shape, dtype)
    rows = out.reshape(-1, layout.shape[-1]) if out.ndim else out.reshape(1, 1)
    per = max(1, chunk_bytes // max(layout.row_bytes, 1))
    starts = list(range(0, rows.shape[0], per))
    fd = os.open(layout.path, os.O_RDONLY)
    try:
        if threads <= 1 or len(starts) < 4:
            buffer = np.empty(per * layout.shape[-1], layout.disk_dtype)
            for r0 in starts:
                read_rows(fd, layout, r0, rows[r0 : r0 + per], buffer)
        else:
            from concurrent.futures import ThreadPoolExecutor

            def work(part):
                buffer = np.empty(per * layout.shape[-1], layout.disk_dtype)
                for r0 in part:
                    read_rows(fd, layout, r0, rows[r0 : r0 + per], buffer)

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, [starts[k::threads] for k in range(threads)]))
    finally:
        os.close(fd)
    return out


# ---------------------------------------------------------------------------------------------
# Writing

# native dtype -> (BITPIX, BZERO, on-disk dtype)
_DISK = {
    np.dtype(np.float32): (-32, 0, np.dtype(">f4")),
    np.dtype(np.float64): (-64, 0, np.dtype(">f8")),
    np.dtype(np.uint8): (8, 0, np.dtype("u1")),
    np.dtype(np.int16): (16, 0, np.dtype(">i2")),
    np.dtype(np.uint16): (16, 32768, np.dtype(">u2")),
    np.dtype(np.int32): (32, 0, np.dtype(">i4")),
    np.dtype(np.uint32): (32, 2147483648, np.dtype(">u4")),
}


@dataclass
class ImageSpec:
    """An image extension to write: EXTNAME, shape (numpy order), native dtype, extra cards.

    Unsigned 16- and 32-bit integers are stored as FITS does (signed, with BZERO).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    cards: dict = field(default_factory=dict)
    offset: int = 0  # of the data, set by FitsWriter

    def __post_init__(self) -> None:
        self.dtype = np.dtype(self.dtype)
        if self.dtype not in _DISK:
            raise ValueError(f"{self.name}: cannot write {self.dtype} images (use one of {sorted(map(str, _DISK))})")
        self.shape = tuple(int(n) for n in self.shape)

    @property
    def bitpix(self) -> int:
        return _DISK[self.dtype][0]

    @property
    def bzero(self) -> int:
        return _DISK[self.dtype][1]

    @property
    def disk(self) -> np.dtype:
        return _DISK[self.dtype][2]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.disk.itemsize

    @property
    def row_bytes(self) -> int:
        return self.shape[-1] * self.disk.itemsize

    @property
    def plane_bytes(self) -> int:
        return int(np.prod(self.shape[-2:])) * self.disk.itemsize

    def header(self) -> fits.Header:
        h = fits.Header()
        h["XTENSION"] = ("IMAGE", "image extension")
        h["BITPIX"] = self.bitpix
        h["NAXIS"] = len(self.shape)
        for k, n in enumerate(reversed(self.shape), start=1):
            h[f"NAXIS{k}"] = n
        h["PCOUNT"] = 0
        h["GCOUNT"] = 1
        if self.bzero:
            h["BZERO"] = self.bzero
            h["BSCALE"] = 1
        h["EXTNAME"] = self.name
        for key, value in self.cards.items():
            h[key] = value
        return h


_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BZERO", "BSCALE", "XTENSION", "END"}


def _primary(header: fits.Header) -> fits.Header:
    """A data-less primary header with the cards of *header* (structural ones replaced)."""
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = 8
    h["NAXIS"] = 0
    h["EXTEND"] = True
    for card in header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key.startswith("NAXIS") or key in ("", "CHECKSUM", "DATASUM", "EXTNAME"):
            continue
        try:
            h.append(card, end=True)
        except (ValueError, fits.VerifyError):
            continue
    return h


#: With ``durable=True``, data are flushed to disk in the background after every this many bytes.
WRITEBACK_BYTES = 256 << 20


class FitsWriter:
    """A FITS file written headers first, its images' data filled in later at known offsets.

    The file's whole size is reserved at once (a full disk fails now, not midway); data not
    written stay zero (which is also the FITS padding). Writes may come from several threads.

    Parameters
    ----------
    path : Path
        A new file (must not exist).
    primary : astropy.io.fits.Header
        Cards of the primary header (which holds no data).
    extensions : list of ImageSpec
    """

    def __init__(
        self,
        path: str | os.PathLike,
        primary: fits.Header,
        extensions: list[ImageSpec],
        *,
        writeback_every: int | None = None,
    ) -> None:
        self.path = Path(path)
        # with writeback_every (bytes), data already written is flushed to disk in the
        # background while later data is computed, so that a final fsync has little left to do
        self._writeback_every = writeback_every
        self._unflushed = 0
        self._flusher: threading.Thread | None = None
        self._count = threading.Lock()
        self.extensions = {e.name: e for e in extensions}
        headers = [(0, _primary(primary).tostring().encode("ascii"))]
        pos = len(headers[0][1])
        for e in extensions:
            text = e.header().tostring().encode("ascii")
            headers.append((pos, text))
            e.offset = pos + len(text)
            pos = e.offset + e.nbytes + (-e.nbytes % BLOCK)
        self.size = pos
        self._local = threading.local()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.posix_fallocate(self.fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                os.ftruncate(self.fd, self.size)
            for offset, text in headers:
                os.pwrite(self.fd, text, offset)
        except BaseException:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)
            raise

    def _to_disk(self, e: ImageSpec, data: np.ndarray, may_modify: bool) -> np.ndarray:
        data = np.asarray(data)
        if data.dtype != e.dtype:
            data = data.astype(e.dtype)
        elif not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        elif not may_modify and e.disk.itemsize > 1:
            data = data.copy()
        if e.bzero:
            data ^= data.dtype.type(e.bzero)  # offset by BZERO: flip the sign bit
        if e.disk.itemsize > 1 and data.dtype.byteorder in ("=", "<") and np.little_endian:
            data.byteswap(inplace=True)
        return data.reshape(-1).view(np.uint8)

    def write_rows(self, name: str, index: int, rows: slice, data: np.ndarray, *, may_modify: bool = False) -> None:
        """Write *data* as rows *rows* of the *index*-th 2-D plane (counting over leading axes).

        *data* is in native byte order; with *may_modify* it is converted in place (no copy).
        """
        e = self.extensions[name]
        offset = e.offset + index * e.plane_bytes + (rows.start or 0) * e.row_bytes
        buf = memoryview(self._to_disk(e, data, may_modify))
        done = 0
        while done < len(buf):
            done += os.pwrite(self.fd, buf[done:], offset + done)
        self._written(len(buf))

    def _written(self, n: int) -> None:
        if self._writeback_every is None:
            return
        with self._count:
            self._unflushed += n
            if self._unflushed < self._writeback_every or (self._flusher is not None and self._flusher.is_alive()):
                return
            self._unflushed = 0
            self._flusher = threading.Thread(target=os.fdatasync, args=(self.fd,), daemon=True)
            self._flusher.start()

    def write_plane(self, name: str, index: int, data: np.ndarray, *, may_modify: bool = False) -> None:
        """Write the *index*-th 2-D plane of extension *name*."""
        self.write_rows(name, index, slice(0, data.shape[0]), data, may_modify=may_modify)

    def write_copies(self, targets: Sequence[tuple[str, int]], rows: slice, data: np.ndarray) -> None:
        """Write the same rows into several (extension, plane) places of one dtype (may modify *data*)."""
        e = self.extensions[targets[0][0]]
        buf = memoryview(self._to_disk(e, data, True))
        for name, index in targets:
            t = self.extensions[name]
            offset = t.offset + index * t.plane_bytes + (rows.start or 0) * t.row_bytes
            done = 0
            while done < len(buf):
                done += os.pwrite(self.fd, buf[done:], offset + done)
            self._written(len(buf))

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.join()  # the file descriptor must outlive the background flush
            self._flusher = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def write_fits(
    path: str | os.PathLike,
    primary: fits.Header,
    extensions: list[ImageSpec],
    *,
    durable: bool = False,
    make_parents: bool = False,
) -> Iterator[FitsWriter]:
    """A `FitsWriter` on a temporary file that becomes *path* only if the block succeeds.

    Parameters
    ----------
    durable : bool
        Flush the file and its folder to disk around the rename (survives a power cut).
    make_parents : bool
        Create the folder first.
    """
    with atomic_path(path, durable=durable, make_parents=make_parents) as tmp:
        out = FitsWriter(tmp, primary, extensions, writeback_every=WRITEBACK_BYTES if durable else None)
        try:
            yield out
        finally:
            out.close()
