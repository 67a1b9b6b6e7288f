"""Which files of the collection a user asked for.

The options are those of Mirage's own ``downloader.download_reffiles``; every value is checked
and a bad one raises `SelectionError` naming the accepted values.

Examples
--------
>>> from mirage_data.collection.catalog import load_catalog
>>> from mirage_data.collection.selection import Selection
>>> files = Selection(instrument="nircam", single_dark=True).files(load_catalog())
>>> sum(1 for f in files if f.is_dark)
10
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .catalog import DARK_KINDS, INSTRUMENTS, Catalog, CatalogEntry

PSF_VERSIONS = ("gridded", "subpixel")
DARK_TYPES = ("linearized", "raw", "both")


class SelectionError(ValueError):
    """An option value that is not accepted."""


def parse_instruments(instrument: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise the ``instrument`` option to a tuple of instrument names.

    Accepts one name, a comma-separated string, a list, or ``all``; case and spaces are forgiven.

    >>> parse_instruments(" NIRCam, fgs ")
    ('nircam', 'fgs')
    >>> parse_instruments("all")
    ('nircam', 'niriss', 'fgs')
    """
    if isinstance(instrument, str):
        names = instrument.split(",")
    else:
        try:
            names = [str(n) for n in instrument]
        except TypeError:
            raise SelectionError(
                f"instrument must be a name, a comma-separated string or a list; got {instrument!r}"
            ) from None
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise SelectionError(f"no instrument given; accepted: {', '.join(INSTRUMENTS)} or all")
    if "all" in names:
        return INSTRUMENTS
    unknown = [n for n in names if n not in INSTRUMENTS]
    if unknown:
        raise SelectionError(
            f"unknown instrument {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(INSTRUMENTS)} (one, several comma-separated, or all)"
        )
    return tuple(dict.fromkeys(n for n in INSTRUMENTS if n in names))


def _choice(name: str, value: object, accepted: Sequence[str]) -> str:
    normal = str(value).strip().lower() if isinstance(value, str) else None
    if normal not in accepted:
        raise SelectionError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")
    return normal


@dataclass(frozen=True)
class Selection:
    """A choice of files, in the terms of Mirage's downloader.

    Parameters
    ----------
    instrument : str or list of str
        ``nircam``, ``niriss``, ``fgs``, several of them (list or comma-separated), or ``all``.
    psf_version : str
        ``gridded`` (the collection's gridded PSF libraries) or ``subpixel`` (legacy libraries,
        which the collection no longer has: selecting them is an error that says so).
    dark_type : str
        ``linearized``, ``raw`` or ``both``.
    single_dark : bool
        Keep one dark per detector (per kind) instead of all of them; FGS keeps one per guider.
    skip_darks, skip_cosmic_rays, skip_psfs, skip_soss : bool
        Leave out the darks, the cosmic-ray libraries, the PSF libraries (and wings), or the
        NIRISS SOSS PSFs.
    """

    instrument: str | Sequence[str] = "all"
    psf_version: str = "gridded"
    dark_type: str = "linearized"
    single_dark: bool = False
    skip_darks: bool = False
    skip_cosmic_rays: bool = False
    skip_psfs: bool = False
    skip_soss: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "instrument", parse_instruments(self.instrument))
        object.__setattr__(self, "psf_version", _choice("psf_version", self.psf_version, PSF_VERSIONS))
        object.__setattr__(self, "dark_type", _choice("dark_type", self.dark_type, DARK_TYPES))
        if self.psf_version == "subpixel" and not self.skip_psfs:
            raise SelectionError(
                "psf_version 'subpixel' names the legacy sub-pixel PSF libraries, which the "
                "collection no longer has; use psf_version='gridded' (the default), or "
                "skip_psfs=True to fetch no PSF library"
            )

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.instrument  # type: ignore[return-value]

    @property
    def dark_kinds(self) -> tuple[str, ...]:
        return DARK_KINDS if self.dark_type == "both" else (self.dark_type,)

    def wants(self, entry: CatalogEntry) -> bool:
        """Whether *entry* belongs to this selection (before `single_dark` thinning)."""
        if entry.instrument not in self.instruments:
            return False
        if entry.group == "darks":
            return not self.skip_darks and entry.dark_kind in self.dark_kinds
        if entry.group in ("psf_library", "psf_wings"):
            return not self.skip_psfs
        if entry.group == "cosmic_ray_library":
            return not self.skip_cosmic_rays
        if entry.group == "soss":
            return not self.skip_soss
        return True  # ghosts, distortion: always fetched with their instrument

    def files(self, catalog: Catalog) -> list[CatalogEntry]:
        """The catalog entries selected, in catalog order."""
        chosen = [e for e in catalog if self.wants(e)]
        if self.single_dark:
            seen: set[tuple[str, str | None, str | None]] = set()
            kept = []
            for e in chosen:
                if e.is_dark:
                    key = (e.instrument, e.detector, e.dark_kind)
                    if key in seen:
                        continue
                    seen.add(key)
                kept.append(e)
            chosen = kept
        return chosen
