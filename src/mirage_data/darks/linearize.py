"""Linearize a raw dark into Mirage's linearized dark, streaming, without the JWST pipeline.

`linearize_dark` reads a full-frame level-1b raw dark one group at a time, runs it through
the pipeline's dq_init, saturation, superbias, refpix and linearity corrections
(`mirage_data.ramp`, equal to jwst 3.0's numbers) and writes the linearized dark Mirage reads
(``SCI``, ``SBANDREFPIX``, ``ZEROFRAME``, ``ZEROSBANDREFPIX``, FORMATS.md section 3) group by
group into a file whose headers are written first with the final shapes
(`mirage_data.io.fits.write_fits`). Memory stays at the calibration arrays plus a few frames
(a few hundred MB), whatever the size of the ramp. The output appears under its name only
when complete; on any error no output is left. `mirage_data.darks.batch` does this for every
raw dark of a MIRAGE_DATA folder.

Examples
--------
>>> from mirage_data.darks.linearize import linearize_dark
>>> linearize_dark("raw_uncal.fits", "linearized.fits", mask="mask.fits",
...                saturation="sat.fits", superbias="bias.fits", linearity="lin.fits")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data import __version__
from mirage_data.calibration.reference_files import (
    HEADER_KEYWORDS,
    REFTYPES,
    Calibration,
    CalibrationDirectory,
    CalibrationError,
    CalibrationPaths,
    read_linearity,
    read_mask,
    read_saturation,
    read_superbias,
    resolve_calibration,
)
from mirage_data.io.fits import FitsWriter, ImageSpec, read_image, read_rows, write_fits
from mirage_data.ramp.chain import CalibrationBuilder, RampLinearizer

from .raw import DarkFormatError, RawDark, open_raw_dark

__all__ = ["DarkFormatError", "RawDark", "open_raw_dark", "linearize_dark", "default_threads"]


def default_threads() -> int:
    """Threads for one dark's tiles when nothing else runs: 2, or 1 on a one-CPU machine."""
    return min(2, os.cpu_count() or 1)


def _primary_header(raw: RawDark, names: Mapping[str, str], zero_source: str) -> fits.Header:
    h = raw.header.copy()
    mirage = {
        "READPATT": raw.header.get("READPATT", ""),
        "NINTS": raw.nints,
        "NGROUPS": raw.ngroups,
        "NFRAMES": raw.nframes,
        "NSKIP": int(raw.header.get("NSKIP", 0)),
        "DETECTOR": raw.detector,
        "INSTRUME": raw.instrument,
        "FASTAXIS": raw.fastaxis,
        "SLOWAXIS": raw.slowaxis,
    }
    for key, value in mirage.items():
        h[key] = value
    comments = {
        "R_MASK": "mask file",
        "R_SATURA": "saturation file",
        "R_SUPERB": "superbias file",
        "R_LINEAR": "linearity file",
    }
    for key, name in names.items():
        h[key] = (name, comments[key])
    for key in ("S_DQINIT", "S_SATURA", "S_SUPERB", "S_REFPIX", "S_LINEAR"):
        h[key] = "COMPLETE"
    h["LINSOFT"] = (f"mirage-data {__version__}", "software that linearized this dark")
    h["LINEQUIV"] = ("jwst 3.0", "pipeline whose numbers these equal")
    # a long file name leaves no room for the comment (astropy would truncate it with a warning)
    h["LINRAW"] = (raw.path.name, "raw dark linearized") if len(raw.path.name) <= 44 else raw.path.name
    h["ZEROSRC"] = (zero_source, "ZEROFRAME from: GROUP0 of SCI, or raw ZEROFRAME")
    return h


def linearize_dark(
    raw_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    saturation: str | os.PathLike | None = None,
    superbias: str | os.PathLike | None = None,
    linearity: str | os.PathLike | None = None,
    calibration: Calibration | CalibrationPaths | None = None,
    calibration_dir: str | os.PathLike | CalibrationDirectory | None = None,
    use_crds: bool = True,
    include_dq: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    executor: Executor | None = None,
    fsync: bool = False,
    tile_rows: int = 128,
) -> Path:
    """Linearize one full-frame raw dark into a Mirage linearized dark.

    Parameters
    ----------
    raw_path : path-like
        Level-1b raw dark (``SCI`` uint16 or float32 (nints, ngroups, 2048, 2048), DN).
    output_path : path-like
        The linearized dark to write: ``SCI`` and ``SBANDREFPIX`` float32 (nints, ngroups,
        2048, 2048), ``ZEROFRAME`` and ``ZEROSBANDREFPIX`` float32 (nints, 2048, 2048), all DN.
    mask, saturation, superbias, linearity : path-like, optional
        JWST MASK, SATURATION, SUPERBIAS and LINEARITY reference files. Files not given are
        found in *calibration_dir*, else through CRDS (if *use_crds*).
    calibration : Calibration or CalibrationPaths, optional
        Reference files already read (not modified) or chosen (instead of the four paths).
    calibration_dir : path-like or CalibrationDirectory, optional
        Folder of reference files, matched by REFTYPE and DETECTOR.
    use_crds : bool
        Ask CRDS for reference files not otherwise given.
    include_dq : bool
        Also write ``PIXELDQ`` (uint32) and ``GROUPDQ`` (uint8) as the pipeline would have them.
    overwrite : bool
        Replace an existing output (else an existing output is an error).
    progress : callable(done_groups, total_groups), optional
        Called after each group.
    threads : int, optional
        Threads sharing each group's tiles when no *executor* is given (default:
        `default_threads`); a pool of them lives for this call.
    executor : concurrent.futures.Executor, optional
        Thread pool of the caller to run the tiles on (not shut down here).
    fsync : bool
        Flush the output to disk before renaming it into place (survives a power cut).
    tile_rows : int
        Rows per processing tile.

    Returns
    -------
    Path
        *output_path*.

    Raises
    ------
    DarkFormatError, CalibrationError, FileExistsError, FileNotFoundError
        Nothing is written when the input is rejected, and no output is left on any error.

    Notes
    -----
    ZEROFRAME: for one-frame groups (RAPID, NISRAPID, FGSRAPID) it is group 0 of each
    integration, as Mirage makes it; for group-averaged readouts the raw ``ZEROFRAME`` is
    linearized as a one-group ramp (Mirage's way), or group 0 is used if the file has none.
    """
    output = Path(output_path)
    raw = open_raw_dark(raw_path)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists (pass overwrite=True / --overwrite to replace it)")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist")
    find = dict(
        mask=mask,
        saturation=saturation,
        superbias=superbias,
        linearity=linearity,
        calibration_dir=calibration_dir,
        use_crds=use_crds,
    )
    with ExitStack() as stack:
        if executor is None:
            threads = default_threads() if threads is None else max(1, int(threads))
            if threads > 1:
                executor = stack.enter_context(ThreadPoolExecutor(threads, thread_name_prefix="linearize"))
        engine, names = _prepare(raw, calibration, include_dq, tile_rows, executor, find)
        zero_from_file = raw.nframes > 1 and raw.zeroframe is not None
        shape4 = raw.sci.shape
        shape3 = (raw.nints,) + raw.frame_shape
        dn = {"BUNIT": "DN"}
        extensions = [
            ImageSpec("SCI", shape4, np.float32, dict(dn)),
            ImageSpec("SBANDREFPIX", shape4, np.float32, dict(dn)),
            ImageSpec("ZEROFRAME", shape3, np.float32, dict(dn)),
            ImageSpec("ZEROSBANDREFPIX", shape3, np.float32, dict(dn)),
        ]
        if include_dq:
            extensions += [ImageSpec("PIXELDQ", raw.frame_shape, np.uint32), ImageSpec("GROUPDQ", shape4, np.uint8)]
        primary = _primary_header(raw, names, "ZEROFRAME" if zero_from_file else "GROUP0")
        with write_fits(output, primary, extensions, durable=fsync) as out:
            _stream(raw, engine, out, include_dq, zero_from_file, progress)
    return output


def _prepare(raw: RawDark, calibration, include_dq: bool, tile_rows: int, executor: Executor | None, find: dict):
    """Read, check and prepare the reference data one file at a time (bounded memory)."""
    pixeldq = read_image(raw.pixeldq, np.uint32) if raw.pixeldq is not None else None
    builder = CalibrationBuilder(
        raw.frame_shape, pixeldq=pixeldq, keep_pixeldq=include_dq, group_averaged=raw.nframes > 1
    )
    del pixeldq
    if isinstance(calibration, Calibration):
        given = calibration
        copy = True  # the caller's arrays: leave them as they are

        def get(reftype):
            return getattr(given, reftype)

    else:
        paths = calibration or resolve_calibration(raw.header, **find)
        copy = False
        readers = {
            "mask": read_mask,
            "saturation": read_saturation,
            "superbias": read_superbias,
            "linearity": read_linearity,
        }

        def get(reftype):
            return readers[reftype](
                paths.path(reftype),
                detector=raw.detector,
                instrument=raw.instrument,
                name=paths.name(reftype),
                shape=raw.frame_shape,
            )

    names = {}
    for reftype in REFTYPES:
        data = get(reftype)
        names[HEADER_KEYWORDS[reftype]] = data.name
        if reftype == "mask":
            builder.add_mask(data.dq)
        elif reftype == "saturation":
            builder.add_saturation(data.threshold, data.dq, copy=copy)
        elif reftype == "superbias":
            builder.add_superbias(data.bias, data.dq, copy=copy)
        else:
            if data.has_inverse and raw.nframes > 1:
                raise CalibrationError(
                    f"{raw.path} averages {raw.nframes} frames per group and {data.path} has "
                    "INV_COEFFS: the pipeline then applies its read-level linearity correction, which "
                    "this linearization does not implement (one-frame readouts such as RAPID are supported)"
                )
            builder.add_linearity(data.coeffs, data.dq, copy=copy)
        del data  # let the file's arrays go before the next file is read
    engine = RampLinearizer(
        builder.build(),
        geometry=raw.geometry,
        ngroups=raw.ngroups,
        nframes=raw.nframes,
        tile_rows=tile_rows,
        executor=executor,
    )
    return engine, names


def _sink(out: FitsWriter, *targets: tuple[str, int]):
    """A callable(rows, tile) writing the engine's float32 tiles into planes of *out*."""
    if len(targets) == 1:
        name, index = targets[0]

        def write(rows: slice, tile: np.ndarray) -> None:
            out.write_rows(name, index, rows, tile, may_modify=True)  # the tile is ours until we return

        return write

    def write_all(rows: slice, tile: np.ndarray) -> None:
        out.write_copies(targets, rows, tile)

    return write_all


class _GroupReader:
    """Reads the raw groups (and their GROUPDQ) into two alternating buffers, the next group
    on the executor while the engine works on the current one (when there is an executor)."""

    def __init__(self, fd: int, raw: RawDark, executor: Executor | None) -> None:
        ny, nx = raw.frame_shape
        self.fd, self.raw, self.executor, self.ny = fd, raw, executor, ny
        # read in place: the on-disk and the native types have the same item size
        self.planes = [np.empty((ny, nx), raw.sci.dtype) for _ in range(2)]
        self.gdq = [np.empty((ny, nx), np.uint8) for _ in range(2)] if raw.groupdq is not None else None
        self.gdq_buffer = [np.empty(ny * nx, raw.groupdq.disk_dtype) for _ in range(2)] if self.gdq else None
        self.pending = None

    def _read(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        plane = self.planes[k % 2]
        read_rows(self.fd, self.raw.sci, k * self.ny, plane, plane.reshape(-1).view(self.raw.sci.disk_dtype))
        if self.gdq is None:
            return plane, None
        read_rows(self.fd, self.raw.groupdq, k * self.ny, self.gdq[k % 2], self.gdq_buffer[k % 2])
        return plane, self.gdq[k % 2]

    def get(self, k: int, total: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Group *k* (valid until group k + 2 is asked for); starts reading group k + 1."""
        current = self.pending.result() if self.pending is not None else self._read(k)
        self.pending = None
        if self.executor is not None and k + 1 < total:
            self.pending = self.executor.submit(self._read, k + 1)
        return current


def _stream(
    raw: RawDark, engine: RampLinearizer, out: FitsWriter, include_dq: bool, zero_from_file: bool, progress
) -> None:
    ny, nx = raw.frame_shape
    if include_dq:
        out.write_plane("PIXELDQ", 0, engine.pixeldq)
    fd = os.open(raw.path, os.O_RDONLY)
    try:
        total = raw.nints * raw.ngroups
        reader = _GroupReader(fd, raw, engine.executor)
        for i in range(raw.nints):
            engine.start_integration()
            for g in range(raw.ngroups):
                k = i * raw.ngroups + g
                plane, gdq_in = reader.get(k, total)
                also_zero = g == 0 and not zero_from_file  # one-frame groups: ZEROFRAME is group 0
                sci = _sink(out, ("SCI", k), *([("ZEROFRAME", i)] if also_zero else []))
                sb = _sink(out, ("SBANDREFPIX", k), *([("ZEROSBANDREFPIX", i)] if also_zero else []))
                for fg, gdq in engine.process_group(plane, sci, sb, gdq_in):
                    if include_dq:
                        out.write_plane("GROUPDQ", i * raw.ngroups + fg, gdq)
                if progress is not None:
                    progress(k + 1, total)
            for fg, gdq in engine.finish_integration():
                if include_dq:
                    out.write_plane("GROUPDQ", i * raw.ngroups + fg, gdq)
        if zero_from_file:
            # Mirage linearizes the raw zero frames as a one-group ramp of their own
            zero_engine = engine.for_ngroups(1)
            zplane = np.empty((ny, nx), raw.zeroframe.dtype)
            zbuffer = zplane.reshape(-1).view(raw.zeroframe.disk_dtype)
            for i in range(raw.nints):
                read_rows(fd, raw.zeroframe, i * ny, zplane, zbuffer)
                zero_engine.start_integration()
                zero_engine.process_group(zplane, _sink(out, ("ZEROFRAME", i)), _sink(out, ("ZEROSBANDREFPIX", i)))
                zero_engine.finish_integration()
    finally:
        if "reader" in locals() and reader.pending is not None:
            reader.pending.cancel() or reader.pending.exception()  # no read left running on a closed fd
        os.close(fd)


def linearize_job(raw: str, output: str, paths: CalibrationPaths | None, options: dict) -> tuple[float, int, str]:
    """`linearize_dark` as a batch task (runs in a worker: this module's imports stay light).

    Returns the seconds taken and the output's size and sha256 (read back while it is in the
    page cache), for the inventory.
    """
    import hashlib
    import time

    t0 = time.perf_counter()
    linearize_dark(raw, output, calibration=paths, **options)
    seconds = time.perf_counter() - t0
    h = hashlib.sha256()
    with open(output, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return seconds, os.path.getsize(output), h.hexdigest()
