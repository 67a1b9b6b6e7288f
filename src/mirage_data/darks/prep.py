"""Prepared darks: Mirage 2.5's dark_prep product for one exposure, streamed, without Mirage.

`prepare_dark` reads a Mirage input yaml file and writes what Mirage's ``DarkPrep`` would
write for it: ``<Output:directory>/<Output:file minus .fits>[_segNNN]_linear_dark_prep_object.fits``
with float32 ``SCI`` and ``SBANDREFPIX`` (nint, ngroup, ny, nx), ``ZEROFRAME`` and
``ZEROSBANDREFPIX`` (nint, ny, nx) and the primary keys its simulators read. Give the files to
Mirage's simulators as ``override_dark`` (`mirage_lines`) and dark_prep is skipped.

What it does, as Mirage does it:

- **Cropping** to the yaml's aperture (``Readout:array_name``) with the SIAF bounds Mirage
  uses (`mirage_data.darks.apertures`); SBANDREFPIX and the zero frames are cropped the same.
- **Readout patterns**: a one-frame dark (RAPID, NISRAPID, FGSRAPID) is averaged into the
  requested pattern (group ``g`` = mean of frames ``g (nframe + nskip) + [0, nframe)``,
  `mirage_data.ramp.resample`); a dark already in the requested pattern is passed through.
- **Zero frames**: a one-frame linearized dark gives its ZEROFRAME (else its frame 0) with
  SBANDREFPIX frame 0; a raw dark gives linearized group 0 for one-frame output, else its
  raw zero frame (or frame 0) linearized as a one-group ramp, else group 0 scaled by
  TFRAME/TGROUP.
- **Raw darks** are averaged, then linearized in the same pass by the project's
  pipeline-equal chain (`mirage_data.ramp.chain`) on the full frame, then cropped.
- **Segments** split where Mirage 2.5 splits, with its names (`mirage_data.darks.segments`).

Where Mirage 2.5 is wrong, this does instead (MIRAGE_USAGE.md 1.10):

- **Integrations**: ``nint`` dark integrations of the yaml dark's own detector (DETECTOR
  checked), each integration of a multi-integration dark counting as one; the yaml's dark
  first, the others drawn from a seeded generator (``seed``, recorded as ``DARKSEED``), all
  distinct while there are enough (then reused in the same order, noted in the result).
- **More frames than the dark has**: the ramp continues with the dark's own frame-to-frame
  steps (`mirage_data.ramp.extend`): no jump, bias counted once, for any length.
- **Provenance**: ``R_*`` of a linearized dark are carried over (Mirage writes ``N/A``), and
  the source of every integration is recorded (``DKS00001`` ...).
- **Non-one-frame linearized darks** in the requested pattern are passed through (Mirage
  crashes), with their own ZEROFRAME/ZEROSBANDREFPIX.

Memory: a few frames of the aperture (plus, for raw darks, the calibration arrays and a
full-frame group), whatever the length of the dark or the exposure. A linearized dark is read
band of rows by band (``os.preadv``, only the aperture's rows; 1 MiB bands that stay in the CPU
caches while a group's frames are added), SCI and SBANDREFPIX side by side on two threads, and
the output written band by band into a file that appears under its name only when complete.

Why one module: reading the yaml, choosing the integrations, reading and continuing frames and
writing the product all work on one `DarkExposure` and one product layout; split, the parts
would only pass those private details between modules.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from glob import escape, glob
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits

from mirage_data import __version__
from mirage_data.io.fits import FitsWriter, ImageLayout, ImageSpec, open_layouts, read_rows, write_fits
from mirage_data.ramp.extend import extend_frame, frame_source
from mirage_data.ramp.resample import average_frames, group_frames

from .apertures import aperture_bounds
from .readout import ReadPattern, is_rapid, read_pattern
from .segments import FILE_SPLITTING_LIMIT, integration_segments, segment_suffixes

__all__ = [
    "DarkPrepError",
    "DarkExposure",
    "DarkSource",
    "PreparedDarks",
    "read_dark_exposure",
    "candidate_darks",
    "choose_sources",
    "prepare_dark",
    "prepared_name",
    "mirage_lines",
    "PRODUCT_SUFFIX",
]

PRODUCT_SUFFIX = "_linear_dark_prep_object.fits"

#: Mirage's dark globs for nint > 1 (``mirage.utils.constants``): FGS1/FGS2 apertures
#: look only at GUIDER1 (``_497_``) / GUIDER2 (``_498_``) files.
_FGS_GLOBS = {"FGS1": "*_497_*fits", "FGS2": "*_498_*fits"}


class DarkPrepError(ValueError):
    """An exposure whose dark cannot be prepared (one line: what is wrong, what is accepted)."""


# ---------------------------------------------------------------------------------------------
# The exposure, as the yaml file describes it


def _is_none(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def _expand(value) -> Path:
    return Path(os.path.abspath(os.path.expandvars(str(value))))


@dataclass
class DarkExposure:
    """What dark_prep reads from a Mirage yaml file.

    Attributes
    ----------
    yaml_path : Path
    instrument : str
        ``nircam``, ``niriss`` or ``fgs``.
    aperture : str
        ``Readout:array_name``.
    pattern : ReadPattern
    ngroup, nint : int
    dark : Path
        ``Reffiles:linearized_darkfile``, else ``Reffiles:dark``.
    raw : bool
        The dark is raw (``Reffiles:dark``), to be linearized.
    output_dir : Path
    output_stem : str
        ``Output:file`` minus its last 5 characters (``.fits``), as Mirage names it.
    reffiles : dict
        ``Reffiles`` values for ``badpixmask``, ``saturation``, ``superbias``, ``linearity``.
    bounds : tuple of int
        ``(x0, y0, x1, y1)`` of the aperture (`aperture_bounds`).
    """

    yaml_path: Path
    instrument: str
    aperture: str
    pattern: ReadPattern
    ngroup: int
    nint: int
    dark: Path
    raw: bool
    output_dir: Path
    output_stem: str
    reffiles: dict = field(default_factory=dict)
    bounds: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bounds
        return (y1 - y0 + 1, x1 - x0 + 1)


def read_dark_exposure(yaml_path: str | os.PathLike) -> DarkExposure:
    """Read the keys dark_prep uses from a Mirage input yaml file.

    Raises
    ------
    DarkPrepError
        Unreadable file, missing key, unknown instrument, pattern or aperture, no dark.
    """
    path = Path(yaml_path)
    try:
        # libyaml's safe loader when present: the same documents as yaml.safe_load, parsed in C
        params = yaml.load(path.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DarkPrepError(f"{path}: cannot read it as YAML ({exc})") from None
    try:
        inst = str(params["Inst"]["instrument"]).strip().lower()
        readout = params["Readout"]
        reffiles = params["Reffiles"]
        output = params["Output"]
        aperture = str(readout["array_name"]).strip()
        patt_name = str(readout["readpatt"])
        ngroup, nint = int(readout["ngroup"]), int(readout["nint"])
        out_file = str(output["file"])
        out_dir = output.get("directory") or "."
    except (KeyError, TypeError, ValueError) as exc:
        raise DarkPrepError(
            f"{path}: not a usable Mirage input yaml ({exc!r} missing or wrong; dark_prep needs Inst:instrument, "
            "Readout:array_name/readpatt/ngroup/nint, Reffiles:linearized_darkfile or dark, Output:file/directory)"
        ) from None
    try:
        pattern = read_pattern(inst, patt_name)
        bounds = aperture_bounds(inst, aperture)
    except ValueError as exc:
        raise DarkPrepError(f"{path}: {exc}") from None
    if ngroup < 1 or nint < 1:
        raise DarkPrepError(f"{path}: Readout ngroup={ngroup}, nint={nint}; both must be >= 1")
    lin, raw = reffiles.get("linearized_darkfile"), reffiles.get("dark")
    if not _is_none(lin):
        dark, is_raw = _expand(lin), False
    elif not _is_none(raw):
        dark, is_raw = _expand(raw), True
    else:
        raise DarkPrepError(f"{path}: neither Reffiles:linearized_darkfile nor Reffiles:dark names a dark")
    keys = ("badpixmask", "saturation", "superbias", "linearity")
    return DarkExposure(
        yaml_path=path,
        instrument=inst,
        aperture=aperture,
        pattern=pattern,
        ngroup=ngroup,
        nint=nint,
        dark=dark,
        raw=is_raw,
        output_dir=_expand(out_dir),
        output_stem=out_file.split("/")[-1][:-5],
        reffiles={k: reffiles.get(k) for k in keys},
        bounds=bounds,
    )


# ---------------------------------------------------------------------------------------------
# Which dark integrations


@dataclass(frozen=True)
class DarkSource:
    """One integration of one dark file."""

    path: Path
    integration: int = 0

    def __str__(self) -> str:
        return f"{self.path.name}[{self.integration}]"


#: The images of a linearized dark (and of the product).
_IMAGES = ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX")


def _open_dark(path: Path) -> tuple[fits.Header, dict]:
    """Primary header and the `ImageLayout` of each of `_IMAGES` present, SCI checked 4-D."""
    try:
        header, _, layouts = open_layouts(path, _IMAGES)
    except (OSError, ValueError) as exc:
        raise DarkPrepError(f"dark {path}: {exc}") from None
    sci = layouts.get("SCI")
    if sci is None or len(sci.shape) != 4:
        raise DarkPrepError(f"dark {path}: no 4-D SCI extension (nints, ngroups, ny, nx)")
    return header, layouts


def _dark_header(path: Path, with_frame: bool = False):
    """Primary header and number of integrations (SCI's first axis) of a dark (and its frame shape)."""
    header, layouts = _open_dark(path)
    sci = layouts["SCI"]
    if with_frame:
        return header, int(sci.shape[0]), tuple(sci.shape[-2:])
    return header, int(sci.shape[0])


def _detector(header: fits.Header) -> str:
    return str(header.get("DETECTOR", "")).strip().upper()


def candidate_darks(exposure: DarkExposure) -> list[Path]:
    """The darks Mirage globs for ``nint > 1`` (the yaml dark's folder), of the yaml dark's detector only.

    Sorted by name; left out: files that are not darks, whose DETECTOR or frame size differs
    from the yaml dark's, and prepared darks written by this module (``PREPSOFT``), which a
    dark folder that is also an output folder would otherwise offer.
    """
    if not exposure.dark.is_file():
        raise DarkPrepError(f"{exposure.yaml_path}: dark {exposure.dark} does not exist")
    header, _, frame = _dark_header(exposure.dark, with_frame=True)
    detector = _detector(header)
    pattern = _FGS_GLOBS.get(exposure.aperture[:4], "*.fits")
    found = []
    for name in sorted(glob(os.path.join(escape(str(exposure.dark.parent)), pattern))):
        p = Path(name)
        try:
            h, _, f = _dark_header(p, with_frame=True)
        except DarkPrepError:
            continue
        if _detector(h) == detector and f == frame and "PREPSOFT" not in h:
            found.append(p)
    if exposure.dark not in found:
        found.insert(0, exposure.dark)
    return found


def default_seed(exposure: DarkExposure) -> int:
    """A seed fixed by the exposure's output name (so that a rerun chooses the same darks)."""
    return zlib.crc32(exposure.output_stem.encode("utf-8"))


def choose_sources(exposure: DarkExposure, seed: int | None = None) -> tuple[list[DarkSource], int, bool]:
    """The dark integration for each of the exposure's integrations.

    ``nint == 1``: integration 0 of the yaml's dark (as Mirage). ``nint > 1``: every
    integration of every same-detector dark in its folder (`candidate_darks`) is a candidate;
    the yaml dark's integrations come first, the others follow in an order drawn by
    ``numpy.random.default_rng(seed)``; the first ``nint`` are used. With fewer candidates
    than ``nint`` they are reused in the same order.

    Returns
    -------
    sources : list of DarkSource
    seed : int
        The seed used (`default_seed` when None was given).
    reused : bool
        Some dark integration serves more than one integration.
    """
    seed = default_seed(exposure) if seed is None else int(seed)
    if exposure.nint == 1:
        if not exposure.dark.is_file():
            raise DarkPrepError(f"{exposure.yaml_path}: dark {exposure.dark} does not exist")
        return [DarkSource(exposure.dark, 0)], seed, False
    files = candidate_darks(exposure)
    own = [DarkSource(exposure.dark, i) for i in range(_dark_header(exposure.dark)[1])]
    others = [DarkSource(p, i) for p in files if p != exposure.dark for i in range(_dark_header(p)[1])]
    order = np.random.default_rng(seed).permutation(len(others))
    pool = own + [others[k] for k in order]
    sources = [pool[k % len(pool)] for k in range(exposure.nint)]
    return sources, seed, exposure.nint > len(pool)


# ---------------------------------------------------------------------------------------------
# Reading frames of a dark, cropped, continued past its end


class _Frames:
    """Cropped frames of one integration of one image (SCI or SBANDREFPIX) of a dark file.

    All of the aperture's rows by default; `set_band` restricts reading to a band of them (so
    that a group is averaged band by band in buffers that stay in the CPU cache).
    """

    def __init__(
        self, fd: int, layout: ImageLayout, integration: int, bounds, full: bool = False, band_rows: int | None = None
    ) -> None:
        self.fd, self.layout, self.integration = fd, layout, integration
        self.nframes = int(layout.shape[1])
        ny = int(layout.shape[-2])
        x0, y0, x1, y1 = (0, 0, layout.shape[-1] - 1, ny - 1) if full else bounds
        self.ny_full, self.rows, self.cols = ny, slice(y0, y1 + 1), slice(x0, x1 + 1)
        self.crop_x = not full and (x0 != 0 or x1 != layout.shape[-1] - 1)
        n = y1 - y0 + 1
        self.nrows = n
        rows = n if band_rows is None else max(1, min(n, int(band_rows)))
        # big-endian float32 on disk is used as it is (numpy reads it in its sums): no conversion pass
        self._as_is = layout.disk_dtype == np.dtype(">f4") and layout.bzero == 0 and layout.bscale == 1
        self._disk_all = np.empty((rows, layout.shape[-1]), layout.disk_dtype)
        self._buf_all = self._disk_all if self._as_is else np.empty((rows, layout.shape[-1]), np.float32)
        self._ends: tuple[np.ndarray, np.ndarray] | None = None
        self.set_band(0, rows)

    def set_band(self, start: int, stop: int) -> None:
        """Read rows ``start:stop`` of the aperture from now on (at most the buffer's rows)."""
        if not 0 <= start < stop <= min(self.nrows, start + self._disk_all.shape[0]):
            raise ValueError(f"band {start}:{stop} of {self.nrows} rows (buffer of {self._disk_all.shape[0]})")
        self.band = (start, stop)
        self._disk = self._disk_all[: stop - start]
        self._buf = self._buf_all[: stop - start]
        self._ends = None

    def _view(self, k: int) -> np.ndarray:
        """Frame *k* of the file, cropped to the band: a view of the read buffer (valid until the next read)."""
        first_row = (self.integration * self.nframes + k) * self.ny_full + self.rows.start + self.band[0]
        if self._as_is:
            _pread_exact(self.fd, self._disk, self.layout.offset + first_row * self.layout.row_bytes, self.layout)
        else:
            read_rows(self.fd, self.layout, first_row, self._buf, self._disk.reshape(-1))
        return self._buf[:, self.cols] if self.crop_x else self._buf

    def _frame_view(self, k: int) -> np.ndarray:
        """Frame *k*, continued past the end of the ramp; valid until the next call."""
        r, q = frame_source(k, self.nframes)
        if q == 0:
            return self._view(r)
        if self._ends is None:
            first = np.array(self._view(0), np.float32)
            self._ends = (first, np.array(self._view(self.nframes - 1), np.float32))
            self._ext = np.empty_like(first)
        return extend_frame(self._view(r), *self._ends, q, out=self._ext)

    def frame(self, k: int) -> np.ndarray:
        """Frame *k*, continued past the end of the ramp (`mirage_data.ramp.extend`); a new array."""
        return np.array(self._frame_view(k), np.float32)

    def group(self, frames: Sequence[int], out: np.ndarray) -> np.ndarray:
        # each frame is used before the next is read
        return average_frames((self._frame_view(int(k)) for k in frames), out=out)


def _pread_exact(fd: int, out: np.ndarray, offset: int, layout: ImageLayout) -> None:
    """Fill *out* with the bytes at *offset* of the file (refusing a short file)."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise DarkPrepError(f"{layout.path}: file ends inside the {layout.extname} data (truncated file?)")
        got += n


class _Zeros:
    """Zero-valued stand-in for an image a dark file lacks (frames of *nx* columns)."""

    def __init__(self, nx: int) -> None:
        self.shape = (0, nx)

    def set_band(self, start: int, stop: int) -> None:
        self.shape = (stop - start, self.shape[1])

    def frame(self, k):
        return np.zeros(self.shape, np.float32)

    def group(self, frames, out):
        out[...] = 0
        return out


def _crop(a: np.ndarray, bounds) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    return a[..., y0 : y1 + 1, x0 : x1 + 1]


# ---------------------------------------------------------------------------------------------
# The product


class PreparedDarks(list):
    """The prepared dark files of one exposure (a list of paths, one per segment), with how they were made.

    Attributes
    ----------
    yaml_path : Path
    seed : int
        Seed of the dark choice.
    sources : list of DarkSource
        Dark integration of each of the exposure's integrations.
    reused : bool
        Fewer distinct dark integrations than ``nint`` were available.
    padded : bool
        The exposure needs more frames than the darks have (continued, see `mirage_data.ramp.extend`).
    """

    def __init__(self, paths, *, yaml_path, seed, sources, reused, padded, mode="imaging") -> None:
        super().__init__(paths)
        self.yaml_path, self.seed, self.sources, self.reused, self.padded = yaml_path, seed, sources, reused, padded
        self.mode = mode

    @property
    def override_dark(self) -> str | list[str]:
        """What to pass as ``override_dark``: one path as str, several as a list (Mirage's convention)."""
        names = [str(p) for p in self]
        return names[0] if len(names) == 1 else names


def prepared_name(exposure: DarkExposure, suffix: str = "") -> str:
    """Mirage's name of the prepared dark (``suffix``: ``''`` or ``_segNNN``)."""
    return f"{exposure.output_stem}{suffix}{PRODUCT_SUFFIX}"


def _primary(exposure: DarkExposure, nints: int, first: fits.Header, refs: dict, seed: int, sources) -> fits.Header:
    h = fits.Header()
    h["READPATT"] = exposure.pattern.name
    h["NINTS"] = nints
    h["NGROUPS"] = exposure.ngroup
    h["NFRAMES"] = exposure.pattern.nframe
    h["NSKIP"] = exposure.pattern.nskip
    for key in ("DETECTOR", "INSTRUME", "SLOWAXIS", "FASTAXIS"):
        h[key] = first.get(key)
    for key in ("R_LINEAR", "R_MASK", "R_SATURA", "R_SUPERB"):
        h[key] = refs.get(key, "N/A")
    h["YAMLFILE"] = str(exposure.yaml_path)  # no comment: long paths continue over CONTINUE cards
    h["PREPSOFT"] = (f"mirage-data {__version__}", "software that prepared this dark")
    h["PREPEQV"] = ("mirage 2.5.0 dark_prep", "product it stands in for")
    h["DARKSEED"] = (seed, "seed of the choice of dark integrations")
    x0, y0, x1, y1 = exposure.bounds
    h["SUBSTRT1"], h["SUBSTRT2"] = x0 + 1, y0 + 1
    h["SUBSIZE1"], h["SUBSIZE2"] = x1 - x0 + 1, y1 - y0 + 1
    for j, s in enumerate(sources):
        h[f"DKS{j + 1:05d}"] = str(s)  # dark file[integration] of integration j + 1
    return h


def _frame_lists(exposure: DarkExposure, dark_patt: str, source: DarkSource) -> np.ndarray:
    """Frame indices (of the dark) averaged into each output group."""
    want = exposure.pattern
    if is_rapid(dark_patt) and not is_rapid(want.name):
        return group_frames(exposure.ngroup, want.nframe, want.nskip)
    if dark_patt == want.name:
        return np.arange(exposure.ngroup)[:, None]
    raise DarkPrepError(
        f"{exposure.yaml_path}: dark {source.path.name} is {dark_patt}; a {want.name} exposure needs a "
        f"{want.name} dark or a one-frame dark (RAPID, NISRAPID, FGSRAPID) of its instrument"
    )


def prepare_dark(
    yaml_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    seed: int | None = None,
    sources: Sequence[DarkSource | tuple] | None = None,
    calibration_dir: str | os.PathLike | None = None,
    use_crds: bool = True,
    crds_context: str | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    pixel_limit: float = FILE_SPLITTING_LIMIT,
) -> PreparedDarks:
    """Write the prepared dark(s) Mirage's dark_prep would write for one yaml file.

    Parameters
    ----------
    yaml_path : path-like
        Mirage input yaml file.
    out_dir : path-like, optional
        Folder for the files (default: the yaml's ``Output:directory``, as Mirage).
    seed : int, optional
        Seed of the choice of dark integrations for ``nint > 1`` (default `default_seed`).
    sources : sequence of DarkSource or (path, integration), optional
        The dark integration of each integration, instead of choosing (one per integration).
    calibration_dir : path-like, optional
        Folder of MASK/SATURATION/SUPERBIAS/LINEARITY files for raw darks, for the
        ``Reffiles`` entries that are not paths.
    use_crds : bool
        Ask CRDS for calibration files of raw darks that are neither given nor in *calibration_dir*.
    crds_context : str, optional
    threads : int, optional
        Threads for a raw dark's linearization tiles (default 2, or 1 on one CPU).
    progress : callable(done, total), optional
        Called after each output group.
    pixel_limit : float
        Pixel reads per file above which the exposure is split (Mirage's constant; smaller
        values only to see splitting on small exposures).

    Returns
    -------
    PreparedDarks
        The written paths (one per segment), with the seed and the dark integrations used.

    Raises
    ------
    DarkPrepError
        The exposure's dark cannot be prepared (nothing is written for it).

    Notes
    -----
    Frames past the end of a dark are made by continuing the dark with its own frame-to-frame
    steps: frame ``k = q (n - 1) + r`` (``0 <= r < n - 1``) of a dark of ``n`` frames ``D`` is
    ``D(r) + q (D(n-1) - D(0))``, applied alike to SCI and SBANDREFPIX (and to raw frames
    before linearization). The ramp keeps accumulating at the dark's rate across every seam,
    each step is one of the dark's real steps, and the bias (in frame 0) is never added twice;
    for exposures of fewer than ``2n`` frames this is exactly Mirage's padding.
    """
    exposure = read_dark_exposure(yaml_path)
    out_dir = exposure.output_dir if out_dir is None else Path(out_dir)
    if sources is None:
        chosen, seed, reused = choose_sources(exposure, seed)
    else:
        chosen = [s if isinstance(s, DarkSource) else DarkSource(Path(s[0]), int(s[1])) for s in sources]
        if len(chosen) != exposure.nint:
            raise DarkPrepError(f"{exposure.yaml_path}: {len(chosen)} dark sources given for nint = {exposure.nint}")
        seed, reused = (default_seed(exposure) if seed is None else int(seed)), len(set(chosen)) < len(chosen)
    ny, nx = exposure.shape
    split, segments = integration_segments(
        nx, ny, exposure.ngroup, exposure.pattern.nframe, exposure.pattern.nskip, exposure.nint, pixel_limit
    )
    suffixes = segment_suffixes(split, len(segments))
    headers, layouts = {}, {}
    for s in dict.fromkeys(chosen):
        h, layouts[s.path] = _open_dark(s.path)
        nints = int(layouts[s.path]["SCI"].shape[0])
        if not 0 <= s.integration < nints:
            raise DarkPrepError(f"dark {s.path} has {nints} integration(s); integration {s.integration} asked for")
        headers[s.path] = h
    detectors = {_detector(headers[s.path]) for s in chosen}
    if len(detectors) > 1:
        raise DarkPrepError(
            f"{exposure.yaml_path}: the darks chosen are of several detectors ({', '.join(sorted(detectors))}); "
            "all integrations of an exposure must come from darks of its detector"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    padded = False
    total = exposure.nint * exposure.ngroup
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    with ExitStack() as stack:
        linearizer = _RawLinearizer(exposure, headers[chosen[0].path], calibration_dir, use_crds, crds_context, threads)
        stack.callback(linearizer.close)
        executor = None
        if not exposure.raw and (threads if threads is not None else min(2, os.cpu_count() or 1)) > 1:
            from concurrent.futures import ThreadPoolExecutor

            executor = stack.enter_context(ThreadPoolExecutor(2, thread_name_prefix="darkprep"))
        refs = linearizer.refs if exposure.raw else _reference_cards(headers[chosen[0].path])
        for (start, stop), suffix in zip(segments, suffixes, strict=True):
            seg_sources = chosen[start:stop]
            path = out_dir / prepared_name(exposure, suffix)
            n = stop - start
            shape4, shape3 = (n, exposure.ngroup, ny, nx), (n, ny, nx)
            dn = {"BUNIT": "DN"}
            extensions = [
                ImageSpec("SCI", shape4, np.float32, dict(dn)),
                ImageSpec("SBANDREFPIX", shape4, np.float32, dict(dn)),
                ImageSpec("ZEROFRAME", shape3, np.float32, dict(dn)),
                ImageSpec("ZEROSBANDREFPIX", shape3, np.float32, dict(dn)),
            ]
            primary = _primary(exposure, n, headers[seg_sources[0].path], refs, seed, seg_sources)
            with write_fits(path, primary, extensions) as out:
                for j, source in enumerate(seg_sources):
                    if exposure.raw:
                        padded |= linearizer.write(out, j, source, headers[source.path], tick)
                    else:
                        padded |= _write_linearized(
                            out, j, exposure, source, headers[source.path], tick, executor, layouts[source.path]
                        )
            written.append(path)
    return PreparedDarks(written, yaml_path=exposure.yaml_path, seed=seed, sources=chosen, reused=reused, padded=padded)


def _reference_cards(header: fits.Header) -> dict:
    return {k: str(header[k]) for k in ("R_LINEAR", "R_MASK", "R_SATURA", "R_SUPERB") if k in header}


#: Bytes of one band of rows (`_Frames.set_band`): a band's read buffer and its sums stay in the CPU
#: caches while a group's frames are added (1 MiB: fastest of 0.25-4 MiB measured on 2048 columns).
_BAND_BYTES = 1 << 20


def _write_linearized(
    out: FitsWriter,
    j: int,
    exposure: DarkExposure,
    source: DarkSource,
    header: fits.Header,
    tick,
    executor=None,
    layouts: dict | None = None,
) -> bool:
    """Integration *j* of the product from one integration of a linearized dark; True if padded.

    SCI (with ZEROFRAME) and SBANDREFPIX (with ZEROSBANDREFPIX) are made side by side on
    *executor*'s threads, each band of rows by band: every group of the band, then the band's
    zero frame. Per pixel the arithmetic is that of whole frames (same sums in the same order).
    """
    if layouts is None:
        layouts = _open_dark(source.path)[1]
    sci = layouts["SCI"]
    x0, y0, x1, y1 = exposure.bounds
    if y1 >= sci.shape[-2] or x1 >= sci.shape[-1]:
        raise DarkPrepError(
            f"dark {source.path}: frames of {sci.shape[-2]} x {sci.shape[-1]} do not contain {exposure.aperture} "
            f"(columns {x0}-{x1}, rows {y0}-{y1}); use a full-frame dark"
        )
    dark_patt = str(header.get("READPATT", "")).strip().upper()
    rapid = is_rapid(dark_patt)
    frames = _frame_lists(exposure, dark_patt, source)
    ny, nx = exposure.shape
    band = min(ny, max(1, _BAND_BYTES // (4 * int(sci.shape[-1]))))
    fd = os.open(source.path, os.O_RDONLY)
    try:
        data = _Frames(fd, sci, source.integration, exposure.bounds, band_rows=band)
        sb_layout = layouts.get("SBANDREFPIX")
        sb = _Frames(fd, sb_layout, source.integration, exposure.bounds, band_rows=band) if sb_layout else _Zeros(nx)
        # Mirage's zero frames: a one-frame dark gives its ZEROFRAME (else frame 0) and SBANDREFPIX
        # frame 0; a group-averaged one its ZEROFRAME (else group 0 scaled by TFRAME/TGROUP) and
        # ZEROSBANDREFPIX (else SBANDREFPIX group 0)
        zero_sci = (layouts.get("ZEROFRAME"), not rapid)
        zero_sb = (None if rapid else layouts.get("ZEROSBANDREFPIX"), False)

        def fill(name: str, images, zero_name: str, zero: tuple) -> None:
            zero_layout, estimate = zero
            plane = np.empty((band, nx), np.float32)
            for start in range(0, ny, band):
                stop = min(ny, start + band)
                rows = slice(start, stop)
                images.set_band(start, stop)
                part = plane[: stop - start]
                for g, fr in enumerate(frames):
                    out.write_rows(name, j * exposure.ngroup + g, rows, images.group(fr, part), may_modify=True)
                if zero_layout is not None:
                    z = _image3_rows(fd, zero_layout, source.integration, exposure.bounds, rows)
                elif estimate:
                    z = _zero_estimate(images.frame(0), header)
                else:
                    z = images.frame(0)
                out.write_rows(zero_name, j, rows, z, may_modify=True)

        jobs = (("SCI", data, "ZEROFRAME", zero_sci), ("SBANDREFPIX", sb, "ZEROSBANDREFPIX", zero_sb))
        if executor is None:
            for job in jobs:
                fill(*job)
        else:  # side by side (reading, sums and writing release the GIL)
            for f in [executor.submit(fill, *job) for job in jobs]:
                f.result()
        for _ in frames:
            tick()
        padded = int(frames.max()) >= data.nframes
    finally:
        os.close(fd)
    return padded


def _image3_rows(fd: int, layout: ImageLayout, integration: int, bounds, rows: slice) -> np.ndarray:
    """Rows *rows* (of the aperture) of plane *integration* of a 3-D image (nints, ny, nx), cropped."""
    ny, nx_full = int(layout.shape[-2]), int(layout.shape[-1])
    x0, y0, x1, _ = bounds
    buf = np.empty((rows.stop - rows.start, nx_full), np.float32)
    read_rows(fd, layout, integration * ny + y0 + rows.start, buf)
    return np.ascontiguousarray(buf[:, x0 : x1 + 1])


def _zero_estimate(group0: np.ndarray, header) -> np.ndarray:
    """Mirage's zero frame for a group-averaged dark without one: group 0 scaled by TFRAME/TGROUP."""
    tframe, tgroup = header.get("TFRAME"), header.get("TGROUP")
    if tframe and tgroup:
        return (group0 / np.float32(tgroup) * np.float32(tframe)).astype(np.float32)
    return group0


# ---------------------------------------------------------------------------------------------
# Raw darks: averaged, linearized on the full frame, cropped


class _RawLinearizer:
    """The project's pipeline-equal linearization for the raw darks of one exposure (built on first use)."""

    def __init__(self, exposure, header, calibration_dir, use_crds, crds_context, threads) -> None:
        self.exposure = exposure
        self.header = header
        self.find = dict(calibration_dir=calibration_dir, use_crds=use_crds, crds_context=crds_context)
        self.threads = threads
        self.engine = None
        self.executor = None
        self.refs: dict = {}
        if exposure.raw:
            self._build()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None

    def _build(self) -> None:
        from mirage_data.calibration.reference_files import (
            HEADER_KEYWORDS,
            REFTYPES,
            CalibrationError,
            read_linearity,
            read_mask,
            read_saturation,
            read_superbias,
            resolve_calibration,
        )
        from mirage_data.ramp.chain import CalibrationBuilder, RampLinearizer

        from .raw import DarkFormatError, open_raw_dark

        ex = self.exposure
        try:
            raw = open_raw_dark(ex.dark)
        except DarkFormatError as exc:
            raise DarkPrepError(str(exc)) from None
        given = {}
        for reftype, key in (
            ("mask", "badpixmask"),
            ("saturation", "saturation"),
            ("superbias", "superbias"),
            ("linearity", "linearity"),
        ):
            value = ex.reffiles.get(key)
            if not _is_none(value) and str(value).strip().lower() != "crds":
                given[reftype] = _expand(value)
        header = raw.header.copy()
        header["READPATT"] = ex.pattern.name  # CRDS selects as for the exposure's pattern (Mirage's model does)
        try:
            paths = resolve_calibration(header, **given, **self.find)
        except CalibrationError as exc:
            raise DarkPrepError(f"{ex.yaml_path}: {exc}") from None
        readers = {
            "mask": read_mask,
            "saturation": read_saturation,
            "superbias": read_superbias,
            "linearity": read_linearity,
        }
        builder = CalibrationBuilder(raw.frame_shape, keep_pixeldq=False, group_averaged=ex.pattern.nframe > 1)
        for reftype in REFTYPES:
            data = readers[reftype](
                paths.path(reftype),
                detector=raw.detector,
                instrument=raw.instrument,
                name=paths.name(reftype),
                shape=raw.frame_shape,
            )
            self.refs[HEADER_KEYWORDS[reftype]] = data.name
            if reftype == "mask":
                builder.add_mask(data.dq)
            elif reftype == "saturation":
                builder.add_saturation(data.threshold, data.dq)
            elif reftype == "superbias":
                builder.add_superbias(data.bias, data.dq)
            else:
                if data.has_inverse and ex.pattern.nframe > 1:
                    raise DarkPrepError(
                        f"{ex.yaml_path}: {data.path} has INV_COEFFS and {ex.pattern.name} averages frames: the "
                        "pipeline's read-level linearity correction is not implemented (use a one-frame pattern)"
                    )
                builder.add_linearity(data.coeffs, data.dq)
            del data
        threads = self.threads if self.threads is not None else min(2, os.cpu_count() or 1)
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.executor = ThreadPoolExecutor(threads, thread_name_prefix="darkprep")
        self.geometry = raw.geometry
        self.engine = RampLinearizer(
            builder.build(),
            geometry=raw.geometry,
            ngroups=ex.ngroup,
            nframes=ex.pattern.nframe,
            executor=self.executor,
        )

    def _sink(self, out: FitsWriter, *targets: tuple[str, int], keep: list | None = None):
        """A callable(rows, tile) cropping the engine's full-width tiles into planes of *out*."""
        x0, y0, x1, y1 = self.exposure.bounds

        def write(rows: slice, tile: np.ndarray) -> None:
            a, b = max(rows.start, y0), min(rows.stop, y1 + 1)
            if a >= b:
                return
            part = np.ascontiguousarray(tile[a - rows.start : b - rows.start, x0 : x1 + 1])
            for name, index in targets:
                out.write_rows(name, index, slice(a - y0, b - y0), part)
            if keep is not None:
                keep[0][a - y0 : b - y0] = part

        return write

    def write(self, out: FitsWriter, j: int, source: DarkSource, header: fits.Header, tick) -> bool:
        from .raw import DarkFormatError, open_raw_dark

        ex = self.exposure
        try:
            raw = open_raw_dark(source.path)
        except DarkFormatError as exc:
            raise DarkPrepError(str(exc)) from None
        if raw.geometry != self.geometry:
            raise DarkPrepError(f"dark {source.path}: frame geometry differs from {ex.dark.name}'s")
        dark_patt = str(raw.header.get("READPATT", "")).strip().upper()
        frames = _frame_lists(ex, dark_patt, source)
        rapid_out = is_rapid(ex.pattern.name)
        ny, nx = ex.shape
        fd = os.open(source.path, os.O_RDONLY)
        try:
            data = _Frames(fd, raw.sci, source.integration, None, full=True)
            plane = np.empty(raw.frame_shape, np.float32)
            group0 = [np.empty((ny, nx), np.float32)], [np.empty((ny, nx), np.float32)]
            engine = self.engine
            engine.start_integration()
            for g, fr in enumerate(frames):
                zero = [("ZEROFRAME", j)] if (g == 0 and rapid_out) else []
                zsb = [("ZEROSBANDREFPIX", j)] if (g == 0 and rapid_out) else []
                sci = self._sink(out, ("SCI", j * ex.ngroup + g), *zero, keep=group0[0] if g == 0 else None)
                sb = self._sink(out, ("SBANDREFPIX", j * ex.ngroup + g), *zsb, keep=group0[1] if g == 0 else None)
                engine.process_group(data.group(fr, plane), sci, sb)
                tick()
            engine.finish_integration()
            padded = int(frames.max()) >= data.nframes
            if not rapid_out:
                zsource = None
                if raw.zeroframe is not None:
                    z = np.empty(raw.frame_shape, np.float32)
                    read_rows(fd, raw.zeroframe, source.integration * raw.frame_shape[0], z)
                    if z.any():
                        zsource = z
                if zsource is None and is_rapid(dark_patt):
                    zsource = data.frame(0)  # Mirage's RampModel reading: frame 0 stands for a missing zero frame
                if zsource is not None:
                    zero_engine = engine.for_ngroups(1)
                    zero_engine.start_integration()
                    zero_engine.process_group(
                        zsource, self._sink(out, ("ZEROFRAME", j)), self._sink(out, ("ZEROSBANDREFPIX", j))
                    )
                    zero_engine.finish_integration()
                else:
                    out.write_plane("ZEROFRAME", j, _zero_estimate(group0[0][0], raw.header))
                    out.write_plane("ZEROSBANDREFPIX", j, group0[1][0])
        finally:
            os.close(fd)
        return padded


# ---------------------------------------------------------------------------------------------
# Running Mirage with the prepared darks

_SIMULATORS = {
    "imaging": ("mirage.imaging_simulator", "ImgSim", "paramfile"),
    "ts_imaging": ("mirage.imaging_simulator", "ImgSim", "paramfile"),
    "wfss": ("mirage.wfss_simulator", "WFSSSim", "paramfiles"),
    "ts_grism": ("mirage.grism_tso_simulator", "GrismTSO", "parameter_file"),
    "soss": ("mirage.soss_simulator", "SossSim", "paramfile"),
}


def mirage_lines(yaml_path: str | os.PathLike, darks: Sequence[str | os.PathLike], mode: str = "imaging") -> list[str]:
    """Python lines that run Mirage on *yaml_path* with the prepared *darks* as ``override_dark``."""
    module, cls, arg = _SIMULATORS.get(str(mode).lower(), _SIMULATORS["imaging"])
    names = [str(p) for p in darks]
    override = repr(names[0]) if len(names) == 1 else repr(names)
    target = repr(str(yaml_path)) if arg != "paramfiles" else repr([str(yaml_path)])
    return [
        f"from {module} import {cls}",
        f"sim = {cls}({arg}={target}, override_dark={override})",
        "sim.create()",
    ]
