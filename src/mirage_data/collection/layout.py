"""The folder layout Mirage reads through ``MIRAGE_DATA``, and finding files in it.

The globs are Mirage's own (FORMATS.md section 2), so a file found here is a file Mirage finds.

Examples
--------
>>> dark_folder_and_glob("fgs", "GUIDER1", "raw")
('fgs/darks/raw', '*_497_*fits')
>>> export_lines(Path("/data/mirage_data"))
['export MIRAGE_DATA="/data/mirage_data"', 'setenv MIRAGE_DATA "/data/mirage_data"']
"""

from __future__ import annotations

from pathlib import Path

from .catalog import DETECTORS, INSTRUMENTS

MIRAGE_DATA_NAME = "mirage_data"  # the folder below the download path, as Mirage's downloader makes it

_FGS_GUIDER_NUMBER = {"GUIDER1": "497", "GUIDER2": "498"}


def mirage_data_path(download_path: str | Path) -> Path:
    """The ``MIRAGE_DATA`` folder for a download path (``<download_path>/mirage_data``)."""
    return Path(download_path).expanduser().absolute() / MIRAGE_DATA_NAME


def export_lines(mirage_data: Path) -> list[str]:
    """Shell lines that point Mirage at *mirage_data* (sh/bash/zsh, then csh/tcsh)."""
    path = str(mirage_data)
    return [f'export MIRAGE_DATA="{path}"', f'setenv MIRAGE_DATA "{path}"']


def dark_folder_and_glob(instrument: str, detector: str, kind: str) -> tuple[str, str]:
    """Folder (relative to MIRAGE_DATA) and glob with which Mirage finds a detector's darks.

    Parameters
    ----------
    instrument : str
        ``nircam``, ``niriss`` or ``fgs``.
    detector : str
        A collection detector name (`catalog.DETECTORS`).
    kind : str
        ``raw`` or ``linearized``.
    """
    if instrument not in INSTRUMENTS or detector not in DETECTORS[instrument]:
        raise ValueError(f"unknown detector {instrument}/{detector}")
    if kind not in ("raw", "linearized"):
        raise ValueError(f"unknown dark kind {kind!r}; accepted: raw, linearized")
    folder = f"{instrument}/darks/{kind}"
    if instrument == "nircam":
        return f"{folder}/{detector}", "*.fits"
    if instrument == "niriss":
        return folder, "*uncal.fits" if kind == "raw" else "*linear_dark_prep_object.fits"
    return folder, f"*_{_FGS_GUIDER_NUMBER[detector]}_*fits"


def find_darks(mirage_data: Path, instrument: str, detector: str, kind: str = "linearized") -> list[Path]:
    """The darks Mirage would find for a detector, sorted by name."""
    folder, pattern = dark_folder_and_glob(instrument, detector, kind)
    return sorted((Path(mirage_data) / folder).glob(pattern))


def psf_library_folder(mirage_data: Path, instrument: str) -> Path:
    """Folder of an instrument's gridded PSF libraries (``*.fits``)."""
    return Path(mirage_data) / instrument / "gridded_psf_library"


def psf_detector_name(instrument: str, detector: str) -> str:
    """The detector as gridded PSF library file names spell it (``nrca1``, ``nrcb5``, ``nis``,
    ``guider1``).

    >>> psf_detector_name("nircam", "B5"), psf_detector_name("niriss", "NIS")
    ('nrcb5', 'nis')
    """
    return f"nrc{detector.lower()}" if instrument == "nircam" else detector.lower()


def find_psf_libraries(mirage_data: Path, instrument: str, detector: str) -> list[Path]:
    """Gridded PSF library files for a detector (by Mirage's file naming), sorted."""
    pattern = f"{instrument}_{psf_detector_name(instrument, detector)}_*.fits"
    return sorted(psf_library_folder(mirage_data, instrument).glob(pattern))


def cosmic_ray_folder(mirage_data: Path, instrument: str) -> Path:
    """Folder of an instrument's cosmic-ray libraries."""
    return Path(mirage_data) / instrument / "cosmic_ray_library"


def cosmic_ray_suffix(instrument: str, detector: str) -> str:
    """The cosmic-ray library file suffix of a detector (``IPC_NIRCam_A1``, ``IPC_FGS_GUIDER2``)."""
    if instrument == "nircam":
        return f"IPC_NIRCam_{detector}"
    if instrument == "niriss":
        return "IPC_NIRISS_NIS"
    return f"IPC_FGS_{detector}"


def find_cosmic_ray_libraries(mirage_data: Path, instrument: str, detector: str, library: str = "SUNMIN") -> list[Path]:
    """Cosmic-ray library files (``CRs_MCD1.7_<LIB>_<NN>_<suffix>.fits``) for a detector."""
    pattern = f"CRs_MCD1.7_{library}_*_{cosmic_ray_suffix(instrument, detector)}.fits"
    return sorted(cosmic_ray_folder(mirage_data, instrument).glob(pattern))
