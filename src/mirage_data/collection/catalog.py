"""The reference-file collection: what files exist, what they are and where they install.

The catalog is packaged data (``data/collection.tsv``): one line per remote file with its
instrument, group, dark kind, detector(s), approximate size and, where known, exact size and
sha256. A collection served elsewhere (a mirror, the built-in sample collection) can carry its
own catalog file in the same format.

Examples
--------
>>> from mirage_data.collection.catalog import load_catalog
>>> catalog = load_catalog()
>>> len(catalog)
169
>>> entry = catalog.entries[0]
>>> entry.instrument, entry.group
('nircam', 'cosmic_ray_library')
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path, PurePosixPath

from mirage_data.io.atomic import atomic_write_text

#: The real collection's base URL (STScI). Replaced by ``--mirror`` or ``MIRAGE_DATA_MIRROR``.
DEFAULT_BASE_URL = "https://data.science.stsci.edu/redirect/JWST/jwst-simulations/mirage_reference_files/"

INSTRUMENTS = ("nircam", "niriss", "fgs")

#: Detectors per instrument, in the names the collection's folders use.
DETECTORS = {
    "nircam": ("A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "B5"),
    "niriss": ("NIS",),
    "fgs": ("GUIDER1", "GUIDER2"),
}

#: Groups of files, in the order plans list them.
GROUPS = (
    "darks",
    "psf_library",
    "psf_wings",
    "cosmic_ray_library",
    "ghosts",
    "soss",
    "distortion",
)

GROUP_TITLES = {
    "darks": "darks",
    "psf_library": "gridded PSF library",
    "psf_wings": "PSF wings",
    "cosmic_ray_library": "cosmic-ray library",
    "ghosts": "ghost stamps",
    "soss": "SOSS PSFs",
    "distortion": "distortion files",
}

DARK_KINDS = ("raw", "linearized")

#: Folder (relative to MIRAGE_DATA) that an archive of each group unpacks into when its members
#: do not carry the ``mirage_data/`` prefix themselves.
ARCHIVE_FOLDERS = {
    "cosmic_ray_library": "{instrument}/cosmic_ray_library",
    "psf_library": "{instrument}/gridded_psf_library",
    "psf_wings": "{instrument}/gridded_psf_library/psf_wings",
    "ghosts": "{instrument}/ghosts",
    "soss": "{instrument}/soss_psfs",
    "distortion": "{instrument}/reference_files",
}

_COLUMNS = (
    "instrument",
    "group",
    "dark_kind",
    "detector",
    "approx_size",
    "relative_path",
    "size",
    "sha256",
)
#: Columns a catalog may carry beyond `_COLUMNS` (pinned catalogs, `Catalog.pinned`).
_OPTIONAL_COLUMNS = ("installed_sha256",)


class CatalogError(ValueError):
    """A catalog file that cannot be read."""


def crds_detector_name(instrument: str, detector: str) -> str:
    """Return the CRDS/FITS ``DETECTOR`` value for a collection detector name.

    >>> crds_detector_name("nircam", "A5"), crds_detector_name("nircam", "B2")
    ('NRCALONG', 'NRCB2')
    >>> crds_detector_name("fgs", "GUIDER1")
    'GUIDER1'
    """
    if instrument == "nircam":
        module, number = detector[0], detector[1]
        return f"NRC{module}LONG" if number == "5" else f"NRC{detector}"
    return detector


@dataclass(frozen=True)
class CatalogEntry:
    """One file of the collection.

    Attributes
    ----------
    instrument : str
        ``nircam``, ``niriss`` or ``fgs``.
    group : str
        One of `GROUPS`.
    relative_path : str
        Path relative to the collection's base URL (POSIX separators).
    dark_kind : str or None
        ``raw`` or ``linearized`` for darks, else None.
    detectors : tuple of str
        Detectors the file serves (empty where it serves the whole instrument).
    approx_size : int
        Approximate size of the remote file in bytes (published group sizes shared out).
    size : int or None
        Exact size of the remote file in bytes, where known.
    sha256 : str or None
        Hex sha256 of the remote file, where known.
    installed_sha256 : str or None
        Hex digest of what the file installs, where pinned: the sha256 of the installed file
        for a dark, of the sorted ``path<TAB>size<TAB>sha256`` lines of its files for an
        archive (see ``install.content.installed_digest``). Lets an install that never reads
        the remote file (``--link``, an adopted tree) be checked against a pinned catalog.
    """

    instrument: str
    group: str
    relative_path: str
    dark_kind: str | None = None
    detectors: tuple[str, ...] = ()
    approx_size: int = 0
    size: int | None = None
    sha256: str | None = None
    installed_sha256: str | None = None

    @property
    def name(self) -> str:
        """File name of the remote file."""
        return PurePosixPath(self.relative_path).name

    @property
    def is_dark(self) -> bool:
        return self.group == "darks"

    @property
    def is_archive(self) -> bool:
        """True for tarballs, which are unpacked into the layout."""
        return self.relative_path.endswith((".tar.gz", ".tgz", ".tar"))

    @property
    def detector(self) -> str | None:
        """The single detector of a dark (None for files serving several)."""
        return self.detectors[0] if len(self.detectors) == 1 else None

    @property
    def expected_size(self) -> int:
        """Exact size where known, else the approximate size (bytes)."""
        return self.size if self.size is not None else self.approx_size

    @property
    def install_path(self) -> str:
        """Where the file installs, relative to ``MIRAGE_DATA``.

        A dark installs decompressed at its own relative path (``.fits.gz`` -> ``.fits``);
        an archive unpacks into a folder.
        """
        if self.is_archive:
            return ARCHIVE_FOLDERS[self.group].format(instrument=self.instrument)
        if self.relative_path.endswith(".gz"):
            return self.relative_path[: -len(".gz")]
        return self.relative_path

    def url(self, base_url: str) -> str:
        """Full URL (or path) of the file below *base_url*."""
        return base_url.rstrip("/") + "/" + self.relative_path


@dataclass(frozen=True)
class Catalog:
    """The collection's files and where they are served from.

    Attributes
    ----------
    entries : tuple of CatalogEntry
    base_url : str
        Default location of the collection (URL or local folder).
    source : str
        Where the catalog was read from (for messages and the inventory).
    """

    entries: tuple[CatalogEntry, ...]
    base_url: str = DEFAULT_BASE_URL
    source: str = "packaged"
    _by_path: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_path", {e.relative_path: e for e in self.entries})

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, relative_path: object) -> bool:
        return relative_path in self._by_path

    def get(self, relative_path: str) -> CatalogEntry:
        """The entry for *relative_path* (KeyError if the collection has no such file)."""
        return self._by_path[relative_path]

    def subset(self, relative_paths: Iterable[str]) -> Catalog:
        """A catalog of only the named files, in this catalog's order."""
        wanted = set(relative_paths)
        missing = wanted - set(self._by_path)
        if missing:
            raise KeyError(f"not in the catalog: {sorted(missing)}")
        return replace(self, entries=tuple(e for e in self.entries if e.relative_path in wanted))

    def with_checksums(self, sizes_and_sha256: dict[str, tuple[int, str]]) -> Catalog:
        """A copy with exact sizes and sha256 set for the given relative paths."""
        entries = tuple(
            replace(e, size=sizes_and_sha256[e.relative_path][0], sha256=sizes_and_sha256[e.relative_path][1])
            if e.relative_path in sizes_and_sha256
            else e
            for e in self.entries
        )
        return replace(self, entries=entries)

    def pinned(self, pins: dict[str, tuple[int | None, str | None, str | None]]) -> Catalog:
        """A copy with, for the given relative paths, ``(size, sha256, installed_sha256)``
        set (a None keeps the entry's value)."""
        entries = []
        for e in self.entries:
            if e.relative_path in pins:
                size, sha, installed = pins[e.relative_path]
                e = replace(
                    e,
                    size=e.size if size is None else size,
                    sha256=e.sha256 if sha is None else sha,
                    installed_sha256=e.installed_sha256 if installed is None else installed,
                )
            entries.append(e)
        return replace(self, entries=tuple(entries))

    def write(self, path: str | Path) -> None:
        """Write the catalog in the packaged TSV format (readable by `load_catalog`)."""
        buf = io.StringIO()
        buf.write("# Mirage reference-file catalog written by mirage-data.\n")
        buf.write(f"# base_url\t{self.base_url}\n")
        pinned = any(e.installed_sha256 for e in self.entries)
        buf.write("\t".join(_COLUMNS + (_OPTIONAL_COLUMNS if pinned else ())) + "\n")
        for e in self.entries:
            row = (
                e.instrument,
                e.group,
                e.dark_kind or "",
                " ".join(e.detectors),
                str(e.approx_size),
                e.relative_path,
                "" if e.size is None else str(e.size),
                e.sha256 or "",
            ) + ((e.installed_sha256 or "",) if pinned else ())
            buf.write("\t".join(row) + "\n")
        atomic_write_text(path, buf.getvalue())

    @property
    def version(self) -> str:
        """A short fingerprint of the catalog's content (recorded in the inventory)."""
        import hashlib

        h = hashlib.sha256()
        for e in self.entries:
            pin = f"\t{e.installed_sha256}" if e.installed_sha256 else ""
            h.update(f"{e.relative_path}\t{e.size}\t{e.sha256}{pin}\n".encode())
        return h.hexdigest()[:12]


def _parse(text: str, source: str) -> Catalog:
    base_url = DEFAULT_BASE_URL
    lines = []
    for line in text.splitlines():
        if line.startswith("# base_url\t"):
            base_url = line.split("\t", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            lines.append(line)
    reader = csv.DictReader(lines, delimiter="\t")
    if reader.fieldnames is None or not set(_COLUMNS) <= set(reader.fieldnames):
        raise CatalogError(
            f"{source}: not a mirage-data catalog (expected tab-separated columns {', '.join(_COLUMNS)})"
        )
    entries = []
    for number, row in enumerate(reader, start=2):
        try:
            if row["instrument"] not in INSTRUMENTS or row["group"] not in GROUPS:
                raise ValueError(f"unknown instrument or group {row['instrument']!r}/{row['group']!r}")
            entries.append(
                CatalogEntry(
                    instrument=row["instrument"],
                    group=row["group"],
                    relative_path=row["relative_path"],
                    dark_kind=row["dark_kind"] or None,
                    detectors=tuple(row["detector"].split()),
                    approx_size=int(row["approx_size"] or 0),
                    size=int(row["size"]) if row["size"] else None,
                    sha256=_hex(row["sha256"]),
                    installed_sha256=_hex(row.get("installed_sha256") or ""),
                )
            )
        except (ValueError, TypeError) as exc:
            raise CatalogError(f"{source}: line {number}: {exc}") from None
    return Catalog(entries=tuple(entries), base_url=base_url, source=source)


def _hex(text: str) -> str | None:
    text = (text or "").strip().lower()
    if text and (len(text) != 64 or any(c not in "0123456789abcdef" for c in text)):
        raise ValueError(f"{text!r} is not a hex sha256")
    return text or None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read a catalog: the packaged real collection by default, or a catalog TSV file.

    Parameters
    ----------
    path : str or Path, optional
        A catalog file written by `Catalog.write` (for example a sample collection's
        ``catalog.tsv``). Default: the packaged catalog of the real collection.

    Returns
    -------
    Catalog
    """
    if path is None:
        text = resources.files("mirage_data.collection").joinpath("data/collection.tsv").read_text("utf-8")
        return _parse(text, "packaged")
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    return _parse(text, str(path))


def grouped(
    items: Iterable, entry: Callable[[object], CatalogEntry] = lambda item: item
) -> list[tuple[str, str, list]]:
    """Split *items* into rows per instrument and group (darks per kind), in the order plans
    and status reports list them: ``[(instrument, group title, [items]), ...]``; empty rows
    are left out. *entry* gives the `CatalogEntry` of an item (default: the item itself).

    >>> rows = grouped(load_catalog())
    >>> rows[0][:2], len(rows[0][2])
    (('nircam', 'raw darks'), 50)
    """
    order = {
        key: i
        for i, key in enumerate(
            (inst, group, kind)
            for inst in INSTRUMENTS
            for group in GROUPS
            for kind in (DARK_KINDS if group == "darks" else (None,))
        )
    }
    buckets: dict[tuple, list] = {}
    for item in items:
        e = entry(item)
        buckets.setdefault((e.instrument, e.group, e.dark_kind), []).append(item)
    return [
        (inst, f"{kind} darks" if kind else GROUP_TITLES[group], buckets[(inst, group, kind)])
        for inst, group, kind in sorted(buckets, key=lambda k: order.get(k, len(order)))
    ]


def linearized_name(raw_relative_path: str) -> str:
    """The collection's path of the linearized counterpart of a raw dark.

    Works on ``.fits`` and ``.fits.gz`` paths (the suffix is kept).

    >>> linearized_name("fgs/darks/raw/X_1_497_SE_T_dms_uncal.fits")
    'fgs/darks/linearized/X_1_497_SE_T_dms_uncal_linearized.fits'
    """
    p = PurePosixPath(raw_relative_path)
    parts = list(p.parts)
    if len(parts) < 4 or parts[1] != "darks" or parts[2] != "raw":
        raise ValueError(f"not a raw dark path of the collection: {raw_relative_path}")
    instrument = parts[0]
    suffix = ".fits.gz" if p.name.endswith(".fits.gz") else ".fits"
    stem = p.name[: -len(suffix)]
    if instrument == "nircam":
        name = "Linearized_Dark_and_SBRefpix_" + stem.replace("_level1b_uncal", "_uncal")
    elif instrument == "niriss":
        name = "Linearized_Dark_and_SBRefpix_" + stem + "_linear_dark_prep_object"
    else:
        name = stem + "_linearized"
    parts[2] = "linearized"
    parts[-1] = name + suffix
    return str(PurePosixPath(*parts))
