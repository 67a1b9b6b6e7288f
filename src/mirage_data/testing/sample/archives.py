"""The sample collection's tarballs: cosmic-ray and PSF libraries, PSF wings, NIRISS ghosts and
SOSS PSFs, NIRCam distortion files, with members at the paths Mirage's layout expects."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np
from astropy.io import fits

from mirage_data.collection.catalog import (
    DETECTORS,
    CatalogEntry,
    crds_detector_name,
)

from .common import FIXED_DATE, NPIX, SYNTHETIC, seeded_rng, write_and_hash

_TAR_MTIME = 1704067200  # 2024-01-01T00:00:00Z

# --------------------------------------------------------------------------------------------
# Tarballs
# --------------------------------------------------------------------------------------------


def _fits_bytes(hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _tar_gz_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A deterministic .tar.gz of regular files, with an entry for every folder above them."""
    buf = io.BytesIO()
    # GzipFile with an empty name and mtime 0: the gzip header carries neither.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            seen: set[str] = set()
            for name, data in members:
                parents = list(PurePosixPath(name).parents)[:-1]  # without "."
                for folder in reversed(parents):
                    if str(folder) not in seen:
                        seen.add(str(folder))
                        info = _tarinfo(str(folder), tarfile.DIRTYPE, 0o755)
                        tar.addfile(info)
                info = _tarinfo(name, tarfile.REGTYPE, 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = _TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(root: Path, entry: CatalogEntry, seed: int) -> dict[str, tuple[int, str]]:
    builders = {
        "cosmic_ray_library": _cosmic_ray_members,
        "psf_library": _psf_library_members,
        "psf_wings": _psf_wings_members,
        "ghosts": _ghost_members,
        "soss": _soss_members,
        "distortion": _distortion_members,
    }
    rng = seeded_rng(seed, "archive", entry.relative_path)
    members = builders[entry.group](entry, rng)
    return {entry.relative_path: write_and_hash(root / entry.relative_path, _tar_gz_bytes(members))}


def _header(cards: Iterable[tuple[str, object, str]]) -> fits.Header:
    header = fits.Header()
    header["DATE"] = (FIXED_DATE, "UTC date file created")
    header["ORIGIN"] = ("mirage-data", "Institution / software that wrote the file")
    for key, value, comment in cards:
        header[key] = (value, comment)
    header["COMMENT"] = SYNTHETIC
    return header


# Cosmic rays -------------------------------------------------------------------------------

_CR_LIBRARIES = {"SUNMAX": 5.762e-6, "SUNMIN": 1.587e-5, "FLARES": 9.8729e-3}
_CR_FILES = ("00", "01")  # the real libraries have 00..09; two keep the sample small
_CR_STAMPS = 20
_CR_STAMP_SIZE = 21


def _cr_suffixes(instrument: str) -> list[str]:
    label = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[instrument]
    return [f"IPC_{label}_{detector}" for detector in DETECTORS[instrument]]


def _cosmic_ray_stamps(rng: np.random.Generator) -> np.ndarray:
    """Stamps of cosmic-ray tracks (electrons), each a short segment blurred by 3x3 IPC."""
    size = _CR_STAMP_SIZE
    stamps = np.zeros((_CR_STAMPS, size, size), dtype=np.float32)
    ipc = np.array([[0.0021, 0.0166, 0.0021], [0.0166, 0.9252, 0.0166], [0.0021, 0.0166, 0.0021]])
    for stamp in stamps:
        length = rng.uniform(0.0, 8.0)
        angle = rng.uniform(0.0, np.pi)
        energy = rng.lognormal(7.0, 0.8)  # total deposit, e-
        steps = max(1, int(length * 3))
        track = np.zeros((size, size))
        c = size // 2
        for t in np.linspace(-length / 2, length / 2, steps):
            y = int(round(c + t * np.sin(angle)))
            x = int(round(c + t * np.cos(angle)))
            track[y, x] += energy / steps
        blurred = np.zeros_like(track)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                blurred += ipc[dy + 1, dx + 1] * np.roll(np.roll(track, dy, 0), dx, 1)
        stamp[:] = np.round(blurred, 1)
    return stamps


def _cosmic_ray_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    folder = f"mirage_data/{entry.instrument}/cosmic_ray_library"
    members = []
    for library, rate in _CR_LIBRARIES.items():
        for number in _CR_FILES:
            for suffix in _cr_suffixes(entry.instrument):
                header = _header(
                    [
                        ("LIBRARY", library, "Cosmic-ray environment (MCD 1.7)"),
                        ("CRRATE", rate, "[hits/pixel/s] Cosmic-ray rate"),
                        ("FILENUM", int(number), "File number within the library"),
                        ("DETSUFX", suffix, "Detector / IPC variant"),
                    ]
                )
                stamps = fits.ImageHDU(_cosmic_ray_stamps(rng))
                stamps.header["BUNIT"] = "electrons"
                stamps.header["NSTAMPS"] = (_CR_STAMPS, "Number of cosmic-ray stamps")
                data = _fits_bytes([fits.PrimaryHDU(header=header), stamps])
                members.append((f"{folder}/CRs_MCD1.7_{library}_{number}_{suffix}.fits", data))
    return members


# PSF libraries -----------------------------------------------------------------------------

_PSF_FOV = 11  # detector pixels
_PSF_SAMP = 2  # oversampling
_PSF_GRID = 2  # 2 x 2 grid: npsf 4
_PSF_WFE = "predicted"
_PSF_REALIZATION = 0
_WINGS_SIZE = 101  # odd: Mirage crops one pixel all round and needs odd sizes


def _psf_detector_setup(instrument: str, detector: str) -> tuple[str, str, str, str]:
    """(name in file names, DETECTOR keyword, FILTER, PUPIL) of a detector's PSF library.

    NIRCam: WebbPSF names (NRCA5/NRCB5 for the LONG detectors), F200W/CLEAR on the short-wave
    and F444W/CLEAR on the long-wave detectors. NIRISS: F277W/CLEARP, a filter-wheel filter,
    because for pupil-wheel filters (F150W...) Mirage swaps filter and pupil when matching.
    FGS: no filter; Mirage matches FGS libraries on ``fgs_<det>_fovp*`` and overrides the
    FILTER/PUPIL keywords with N/A.
    """
    if instrument == "nircam":
        name = f"nrc{detector.lower()}"
        long_wave = detector.endswith("5")
        return name, name.upper(), ("F444W" if long_wave else "F200W"), "CLEAR"
    if instrument == "niriss":
        return "nis", "NIS", "F277W", "CLEARP"
    return detector.lower(), detector, "N/A", "N/A"


def _psf_file_name(instrument: str, detector: str, *, wings: bool = False) -> str:
    det_name, _, filt, pupil = _psf_detector_setup(instrument, detector)
    middle = "" if instrument == "fgs" else f"_{filt.lower()}_{pupil.lower()}"
    # Wing files carry no npsf: Mirage globs ``..._fovp*_samp*_<wfe>_realization<n>.fits``.
    grid = f"fovp{_WINGS_SIZE}_samp1" if wings else f"fovp{_PSF_FOV}_samp{_PSF_SAMP}_npsf{_PSF_GRID**2}"
    return f"{instrument}_{det_name}{middle}_{grid}_{_PSF_WFE}_realization{_PSF_REALIZATION}.fits"


def _psf_cards(instrument: str, detector: str) -> list[tuple[str, object, str]]:
    _, det_keyword, filt, pupil = _psf_detector_setup(instrument, detector)
    label = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[instrument]
    return [
        ("INSTRUME", label, "Instrument"),
        ("DETECTOR", det_keyword, "Detector"),
        ("FILTER", filt, "Filter"),
        ("PUPIL", pupil, "Pupil element"),
        ("OPD_FILE", f"OPD_RevW_ote_for_{label}_{_PSF_WFE}.fits.gz", "Pupil OPD source"),
        ("OPDSLICE", _PSF_REALIZATION, "OPD slice index"),
    ]


def _psf_image(ny: int, nx: int, fwhm: float, center: tuple[float, float]) -> np.ndarray:
    """A round core plus faint power-law halo, normalized to sum 1."""
    y, x = np.indices((ny, nx), dtype=np.float64)
    r2 = (y - center[0]) ** 2 + (x - center[1]) ** 2
    sigma = fwhm / 2.3548
    image = np.exp(-r2 / (2 * sigma**2)) + 0.02 * (1.0 + r2 / sigma**2) ** -1.5
    return image / image.sum()


def _psf_library_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """WebbPSF/photutils gridded library: cube (npsf, ny, nx), OVERSAMP, NUM_PSFS, DET_YX<i>.

    Each PSF sums to OVERSAMP**2 (photutils' convention: the PSF sampled at detector pixels
    sums to 1).
    """
    folder = f"mirage_data/{entry.instrument}/gridded_psf_library"
    size = _PSF_FOV * _PSF_SAMP
    # (y, x) positions in WebbPSF's order (x outer); DET_YX<i> holds "(y, x)" as WebbPSF writes.
    positions = np.linspace(0, NPIX - 1, _PSF_GRID)
    locations = [(float(y), float(x)) for x in positions for y in positions]
    members = []
    for detector in entry.detectors:
        cube = np.empty((len(locations), size, size), dtype=np.float32)
        base_fwhm = 2.2 if detector.endswith("5") else 1.6  # detector pixels
        for i, _ in enumerate(locations):
            fwhm = base_fwhm * _PSF_SAMP * rng.uniform(0.95, 1.05)
            offset = rng.uniform(-0.2, 0.2, 2)
            center = ((size - 1) / 2 + offset[0], (size - 1) / 2 + offset[1])
            cube[i] = _psf_image(size, size, fwhm, center) * _PSF_SAMP**2
        cards = _psf_cards(entry.instrument, detector) + [
            ("OVERSAMP", _PSF_SAMP, "Oversampling factor for FFTs in computation"),
            ("DET_SAMP", _PSF_SAMP, "Oversampling factor for MFT to detector plane"),
            ("FOVPIXEL", _PSF_FOV, "Field of view in pixels (full array)"),
            ("NUM_PSFS", len(locations), "The total number of fiducial PSFs"),
        ]
        for i, (y, x) in enumerate(locations):
            cards.append((f"DET_YX{i}", f"({y:.1f}, {x:.1f})", f"PSF {i} (y,x) detector position"))
        data = _fits_bytes([fits.PrimaryHDU(cube, header=_header(cards))])
        members.append((f"{folder}/{_psf_file_name(entry.instrument, detector)}", data))
    return members


def _psf_wings_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """One wing image per NIRCam detector (and its filter), in extension DET_DIST."""
    folder = f"mirage_data/{entry.instrument}/gridded_psf_library/psf_wings"
    members = []
    for detector in DETECTORS[entry.instrument]:
        cards = _psf_cards(entry.instrument, detector) + [
            ("OVERSAMP", 1, "Oversampling factor"),
            ("FOVPIXEL", _WINGS_SIZE, "Field of view in pixels"),
        ]
        c = (_WINGS_SIZE - 1) / 2
        wing = _psf_image(_WINGS_SIZE, _WINGS_SIZE, 2.0 * rng.uniform(0.95, 1.05), (c, c))
        primary = fits.PrimaryHDU(header=_header(cards))
        det_dist = fits.ImageHDU(wing.astype(np.float32), header=_header(cards), name="DET_DIST")
        data = _fits_bytes([primary, det_dist])
        members.append((f"{folder}/{_psf_file_name(entry.instrument, detector, wings=True)}", data))
    return members


# NIRISS ghosts, SOSS, NIRCam distortion ---------------------------------------------------


def _ghost_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """``niriss_ghost_cen.fits`` (Mirage's default stamp) and one more (name inferred)."""
    folder = f"mirage_data/{entry.instrument}/ghosts"
    members = []
    for name, filt in (("niriss_ghost_cen.fits", "CLEAR"), ("niriss_ghost_cen_f150w.fits", "F150W")):
        y, x = np.indices((63, 63), dtype=np.float64) - 31.0
        r = np.hypot(y, x)
        ring = np.exp(-((r - rng.uniform(14.0, 18.0)) ** 2) / 8.0) + 0.2 * np.exp(-(r**2) / 50.0)
        image = (ring / ring.sum()).astype(np.float32)
        header = _header(
            [("INSTRUME", "NIRISS", "Instrument"), ("FILTER", filt, "Filter"), ("PUPIL", "CLEARP", "Pupil element")]
        )
        members.append((f"{folder}/{name}", _fits_bytes([fits.PrimaryHDU(image, header=header)])))
    return members


def _soss_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """A small SOSS PSF cube as ``.fits`` (primary cube + ``WAV``) and one as ``.npy``.

    Names follow Mirage's soss_trace module (``SOSS_<filter>_PSF.fits``); inferred.
    """
    folder = f"mirage_data/{entry.instrument}/soss_psfs"
    waves = np.linspace(0.85, 2.8, 3)
    cube = np.stack([_psf_image(76, 76, 2.0 + w, (37.5, 37.5)) for w in waves]).astype(np.float32)
    header = _header(
        [("INSTRUME", "NIRISS", "Instrument"), ("FILTER", "CLEAR", "Filter"), ("PUPIL", "GR700XD", "Pupil element")]
    )
    fits_data = _fits_bytes([fits.PrimaryHDU(cube, header=header), fits.ImageHDU(waves.astype(np.float64), name="WAV")])
    npy = io.BytesIO()
    np.save(npy, cube[:2], allow_pickle=False)
    return [
        (f"{folder}/SOSS_CLEAR_PSF.fits", fits_data),
        (f"{folder}/SOSS_CLEAR_PSF_order1_1.npy", npy.getvalue()),
    ]


def _distortion_members(entry: CatalogEntry, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Small ASDF distortion files, one per NIRCam detector (names inferred)."""
    folder = f"mirage_data/{entry.instrument}/reference_files/distortion"
    members = []
    for detector in DETECTORS[entry.instrument]:
        crds_name = crds_detector_name(entry.instrument, detector)
        text = (
            "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n"
            "--- !core/asdf-1.1.0\n"
            "asdf_library: !core/software-1.0.0 {name: mirage-data, version: sample}\n"
            "meta:\n"
            f"  author: mirage-data\n  date: '{FIXED_DATE}'\n"
            f"  description: {SYNTHETIC}\n"
            f"  instrument: {{name: NIRCAM, detector: {crds_name}}}\n"
            "  reftype: distortion\n  subarray: {name: FULL}\n"
            f"coefficients: [{', '.join(f'{v:.6g}' for v in rng.normal(0, 1e-3, 6))}]\n"
            "...\n"
        )
        members.append((f"{folder}/{crds_name}_FULL_distortion.asdf", text.encode("ascii")))
    return members
