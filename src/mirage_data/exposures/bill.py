"""Each exposure's bill of materials, and the problems Mirage would hit, found before it runs.

`Planner` turns `Exposure` objects into `ExposureBill` objects. Identical needs (the same dark,
PSF request, cosmic-ray set or CRDS query) are worked out once and shared. Files are looked for
in the ``MIRAGE_DATA`` folder (possibly a read-only shared copy) and then in the writable folder
that missing collection files are fetched into; the unit of fetching is the collection's file
(a PSF or cosmic-ray tarball is fetched whole).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from astropy.io import fits

from mirage_data.collection.catalog import Catalog, CatalogEntry
from mirage_data.install.inventory import INSTALLED, MODIFIED, Inventory

from . import psf as psf_rules
from .rules import (
    COLLECTION_DARK_FRAMES,
    COSMIC_RAY_FILES,
    COSMIC_RAY_LIBRARIES,
    CRDS_KEYS,
    FGS_DARK_GLOB,
    OTHER_NEEDS,
    RAPID,
    crds_detector,
    crds_query,
    frames_per_group,
)
from .yaml_input import Exposure, expand_path, is_none

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    """One thing Mirage would get wrong or fail on (``error``: the yaml is not prepared)."""

    severity: str
    message: str


@dataclass
class ExposureBill:
    """What one exposure needs, where it is, and what is wrong.

    Attributes
    ----------
    files : list of str
        Collection files (catalog relative paths) it needs.
    dark : Path or None
        The dark the resolved yaml names; ``dark_key`` is ``linearized_darkfile`` or ``dark``.
    psf_folder, cosmic_ray_folder : Path or None
        Where ``psfpath`` and ``cosmicRay:path`` will point.
    crds : dict
        yaml key -> (query key, reftype) for the keys that say ``crds``.
    links : list of (Path, Path)
        (existing file, link to make) so one folder holds all a glob needs.
    """

    exposure: Exposure
    files: list[str] = field(default_factory=list)
    dark: Path | None = None
    dark_key: str = "linearized_darkfile"
    psf_folder: Path | None = None
    cosmic_ray_folder: Path | None = None
    crds: dict[str, tuple[tuple, str]] = field(default_factory=dict)
    links: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    other_needs: list[str] = field(default_factory=list)
    after_fetch: list = field(default_factory=list)  # checks that need the fetched files

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def problem(self, message: str, severity: str = ERROR) -> None:
        self.problems.append(Problem(severity, message))


@lru_cache(maxsize=8192)
def _dark_header(path: Path) -> tuple[str, str, int | None] | None:
    """(READPATT, DETECTOR, frames in the file) of a dark on disk (None if unreadable)."""
    try:
        with fits.open(path) as hdul:
            h = hdul[0].header
            frames = None
            if "SCI" in hdul and hdul["SCI"].header.get("NAXIS", 0) >= 3:
                frames = int(hdul["SCI"].header["NAXIS3"])
            elif h.get("NGROUPS") is not None:
                frames = int(h["NGROUPS"])
            return str(h.get("READPATT", "")).upper(), str(h.get("DETECTOR", "")).upper(), frames
    except (OSError, ValueError, KeyError):
        return None


class Planner:
    """Works out bills for exposures against one collection (catalog) and two folders.

    Parameters
    ----------
    mirage_data : Path
        ``MIRAGE_DATA`` (may be read-only).
    fetch_into : Path or None
        Writable ``MIRAGE_DATA``-like folder for missing files (None: nothing can be fetched).
    catalog : Catalog
    crds_date, crds_time : str
        Observation date and time used in CRDS queries (recorded for reruns).
    """

    def __init__(
        self, mirage_data: Path, fetch_into: Path | None, catalog: Catalog, crds_date: str, crds_time: str
    ) -> None:
        self.mirage_data = Path(os.path.abspath(mirage_data))
        self.fetch_into = Path(os.path.abspath(fetch_into)) if fetch_into is not None else None
        self.roots = [self.mirage_data] + ([self.fetch_into] if self.fetch_into not in (None, self.mirage_data) else [])
        self.catalog = catalog
        self.crds_date, self.crds_time = crds_date, crds_time
        self.inventories = {root: Inventory.load(root) for root in self.roots if root.is_dir()}
        self._darks_by_tail = {PurePosixPath(e.install_path).as_posix(): e for e in catalog if e.is_dark}
        self.queries: dict[tuple, dict] = {}
        self.to_fetch: set[str] = set()  # collection files missing from both folders
        self._cache: dict[tuple, object] = {}

    # ------------------------------------------------------------------ where files are

    def entry_state(self, entry: CatalogEntry) -> tuple[str, Path | None]:
        """(``present``/``missing``, root) of a single-file entry (a dark)."""
        for root in self.roots:
            inv = self.inventories.get(root)
            if inv is not None and inv.get(entry.relative_path) is not None:
                if inv.status(entry.relative_path) == MODIFIED:
                    continue  # damaged: fetch again
            if (root / entry.install_path).is_file():
                return "present", root
        return "missing", None

    def archive_installed(self, entry: CatalogEntry) -> Path | None:
        for root in self.roots:
            inv = self.inventories.get(root)
            if inv is not None and inv.status(entry.relative_path) == INSTALLED:
                return root
        return None

    def _entry(self, instrument: str, group: str, detector: str | None = None) -> CatalogEntry | None:
        for e in self.catalog:
            if e.instrument == instrument and e.group == group and (detector is None or detector in e.detectors):
                return e
        return None

    def _default_root(self, value: Path, tail: str) -> bool:
        """Whether a yaml path is a collection folder (``.../<tail>``): the yaml may come from
        another machine, so any prefix counts."""
        return value.as_posix().rstrip("/").endswith("/" + tail)

    # ------------------------------------------------------------------ the bill

    def plan(self, exposure: Exposure) -> ExposureBill:
        bill = ExposureBill(exposure)
        self._darks(exposure, bill)
        if exposure.mode == "soss":
            self._soss(exposure, bill)  # the SOSS simulator uses its own PSF cubes, not the gridded library
        else:
            self._psf(exposure, bill)
        self._cosmic_rays(exposure, bill)
        self._crds(exposure, bill)
        bill.other_needs = list(OTHER_NEEDS.get((exposure.instrument, exposure.mode), []))
        self._run_time_needs(exposure, bill)
        bill.files = sorted(set(bill.files))
        return bill

    # darks ---------------------------------------------------------------

    def _collection_dark(self, path: Path) -> CatalogEntry | None:
        parts = path.as_posix().split("/")
        for n in (5, 4):
            entry = self._darks_by_tail.get("/".join(parts[-n:]))
            if entry is not None:
                return entry
        return None

    def _darks(self, exp: Exposure, bill: ExposureBill) -> None:
        ref = exp.reffiles
        if not is_none(ref.get("linearized_darkfile")):
            key, value = "linearized_darkfile", ref["linearized_darkfile"]
        elif not is_none(ref.get("dark")):
            key, value = "dark", ref["dark"]
        else:
            key, value = "linearized_darkfile", None
        bill.dark_key = key
        kind = "linearized" if key == "linearized_darkfile" else "raw"
        same = sorted(
            (
                e
                for e in self.catalog
                if e.is_dark
                and e.instrument == exp.instrument
                and e.dark_kind == kind
                and e.detectors == (exp.detector,)
            ),
            key=lambda e: e.relative_path,
        )
        if value is None:
            if not same:
                bill.problem(f"no dark given and the collection has no {kind} dark for {exp.array_name}")
                return
            entry = same[0]
            bill.problem(f"no dark given (Reffiles:{key} is None); using collection dark {entry.name}", WARNING)
        else:
            path = expand_path(value)
            entry = self._collection_dark(path)
            if entry is None:
                if not path.is_file():
                    bill.problem(f"dark {path} does not exist and is not a collection file")
                    return
                bill.dark = path
                self._check_dark_file(exp, bill, path)
                if exp.nint > 1:
                    self._check_dark_folder(exp, bill, path.parent)
                return
        # a collection dark: this one, plus for nint > 1 enough same-detector ones in its folder
        chosen = [entry]
        if exp.nint > 1:
            others = [e for e in same if e is not entry]
            others.sort(key=lambda e: self.entry_state(e)[0] != "present")  # present ones first
            chosen += others[: max(0, min(exp.nint, len(same)) - 1)]
        states = [self.entry_state(e) for e in chosen]
        roots = {root for _, root in states if root is not None}
        missing = [e for e, (s, _) in zip(chosen, states, strict=True) if s == "missing"]
        if missing or len(roots) > 1:
            if self.fetch_into is None:
                if missing:
                    bill.problem(
                        f"{len(missing)} dark(s) missing and {self.mirage_data} is read-only; "
                        "give --fetch-into DIR (a writable folder)"
                    )
                    return
            target = self.fetch_into or self.mirage_data
            for e, (s, root) in zip(chosen, states, strict=True):
                if s == "present" and root != target:
                    bill.links.append((root / e.install_path, target / e.install_path))
        else:
            target = next(iter(roots))
        bill.files += [e.relative_path for e in chosen]
        self.to_fetch.update(e.relative_path for e in missing)
        bill.dark = target / entry.install_path
        for e, (s, root) in zip(chosen, states, strict=True):
            if s == "present":
                self._check_dark_file(exp, bill, root / e.install_path, first=e is entry)
        if states[0][0] != "present":
            self._check_frames(exp, bill, RAPID[exp.instrument], COLLECTION_DARK_FRAMES, assumed=True)

            def recheck() -> None:  # the fetched dark itself replaces the assumption
                bill.problems[:] = [p for p in bill.problems if "frames assumed" not in p.message]
                self._check_dark_file(exp, bill, bill.dark)

            bill.after_fetch.append(recheck)
        if exp.nint > 1 and all(s == "present" for s, _ in states):
            self._check_dark_folder(exp, bill, bill.dark.parent)
        elif exp.nint > 1:
            bill.after_fetch.append(lambda: self._check_dark_folder(exp, bill, bill.dark.parent))

    def _check_dark_file(self, exp: Exposure, bill: ExposureBill, path: Path, first: bool = True) -> None:
        info = _dark_header(path)
        if info is None:
            bill.problem(f"dark {path.name} cannot be read as FITS")
            return
        readpatt, detector, frames = info
        want = crds_detector(exp.array_name)
        if detector and detector != want:
            bill.problem(f"dark {path.name} is from detector {detector}, the exposure is on {want}")
        if first:
            self._check_frames(exp, bill, readpatt, frames, assumed=False, name=path.name)

    def _check_frames(self, exp, bill, readpatt: str, frames: int | None, assumed: bool, name: str = "") -> None:
        rapids = ("RAPID", "NISRAPID", "FGSRAPID")
        if not (readpatt in rapids and exp.readpatt not in rapids) and readpatt != exp.readpatt:
            bill.problem(
                f"readout pattern {exp.readpatt} cannot be made from dark {name} ({readpatt}); Mirage needs a "
                f"{RAPID[exp.instrument]} dark (averaged into other patterns) or one read as {exp.readpatt}"
            )
            return
        if frames is None:
            return
        needed = exp.ngroup * frames_per_group(exp.instrument, exp.readpatt)
        note = f" ({frames} frames assumed for a collection dark not yet on disk)" if assumed else ""
        what = f"{exp.ngroup} groups of {exp.readpatt} need {needed} frames, the dark {name} has {frames}".replace(
            "dark  has", "dark has"
        )
        if needed >= 2 * frames:
            bill.problem(
                f"{what}{note}: at twice or more Mirage's padding repeats the grown ramp and doubles the "
                "superbias/refpix signal; use fewer groups or a longer dark"
            )
        elif needed > frames:
            bill.problem(f"{what}{note}: Mirage pads with a copy (its cosmic rays appear twice)", WARNING)

    def _check_dark_folder(self, exp: Exposure, bill: ExposureBill, folder: Path) -> None:
        pattern = FGS_DARK_GLOB.get(exp.detector, "*.fits") if exp.instrument == "fgs" else "*.fits"
        want = crds_detector(exp.array_name)
        others = set()
        for p in sorted(folder.glob(pattern)):
            info = _dark_header(p)
            det = info[1] if info else "unreadable"
            if det != want:
                others.add(f"{p.name} ({det or 'no DETECTOR'})")
        if others:
            shown = ", ".join(sorted(others)[:3]) + (" ..." if len(others) > 3 else "")
            bill.problem(
                f"nint={exp.nint}: Mirage picks darks from every {pattern} in {folder}, which holds files not of "
                f"{want}: {shown}; keep only {want} darks there"
            )

    # PSF -----------------------------------------------------------------

    def _psf(self, exp: Exposure, bill: ExposureBill) -> None:
        value = exp.value("simSignals", "psfpath")
        if is_none(value):
            bill.problem("simSignals:psfpath is not set (Mirage needs the gridded PSF library folder)")
            return
        try:
            req = psf_rules.PsfRequest.for_exposure(
                exp.instrument,
                exp.psf_detector,
                exp.filter,
                exp.pupil,
                exp.value("simSignals", "psfwfe", "predicted"),
                exp.value("simSignals", "psfwfegroup", 0),
            )
            pattern, factor = psf_rules.core_pattern(req)
        except (psf_rules.PsfProblem, ValueError, TypeError) as exc:
            bill.problem(str(exc))
            return
        wings = exp.value("simSignals", "add_psf_wings", True) in (True, "True", "true")
        path = expand_path(value)
        tail = f"{exp.instrument}/gridded_psf_library"
        if not self._default_root(path, tail):
            self._custom_psf(bill, path, req, factor, wings)
            return
        key = ("psf", req, wings)
        if key not in self._cache:
            self._cache[key] = self._default_psf(exp, req, wings)
        folder, files, problems, later = self._cache[key]
        bill.psf_folder = folder
        bill.files += files
        bill.problems += problems
        if later:
            bill.after_fetch.append(lambda: bill.problems.extend(self._recheck_psf(folder, req, wings)))
        for link in self._cache.get(("psf-links", req, wings), []):
            bill.links.append(link)

    def _find(self, root: Path, req, wings: bool) -> Path | None:
        folder = root / req.instrument / "gridded_psf_library"
        if wings:
            folder = folder / "psf_wings"
        try:
            return psf_rules.find_library(folder, req, wings=wings, default=root == self.mirage_data)
        except psf_rules.PsfProblem:
            return None

    def _default_psf(self, exp: Exposure, req, wings: bool):
        core_entry = self._entry(exp.instrument, "psf_library", exp.detector)
        wings_entry = self._entry(exp.instrument, "psf_wings") or core_entry
        found = {}
        for part in ("core",) + (("wings",) if wings else ()):
            for root in self.roots:
                hit = self._find(root, req, part == "wings")
                if hit is not None:
                    found[part] = (root, hit)
                    break
        parts = ("core",) + (("wings",) if wings else ())
        entries = {"core": core_entry, "wings": wings_entry}
        missing = [p for p in parts if p not in found]
        problems, files = [], []
        for p in missing:
            entry = entries[p]
            what = "PSF library" if p == "core" else "PSF wings"
            if entry is None or self.archive_installed(entry) is not None:
                problems.append(
                    Problem(
                        ERROR,
                        f"no {what} for {req.instrument} {req.detector} {req.filter}/{req.pupil} "
                        f"({req.wfe}, realization {req.realization}) in the collection",
                    )
                )
            else:
                files.append(entry.relative_path)
                self.to_fetch.add(entry.relative_path)
        files += [entries[p].relative_path for p in found if entries[p] is not None]
        roots = {found[p][0] for p in found}
        if (missing and not problems) or len(roots) > 1:
            if self.fetch_into is None:
                if missing:
                    problems.append(
                        Problem(ERROR, f"PSF files missing and {self.mirage_data} is read-only; give --fetch-into DIR")
                    )
                return None, files, problems, False
            target = self.fetch_into
            links = []
            for root, hit in found.values():
                if root != target:
                    links.append((hit, target / hit.relative_to(root)))
            self._cache[("psf-links", req, wings)] = links
        else:
            target = next(iter(roots)) if roots else None
        folder = target / req.instrument / "gridded_psf_library" if target else None
        return folder, files, problems, bool(missing) and not problems

    def _recheck_psf(self, folder: Path, req, wings: bool) -> list[Problem]:
        out = []
        for part in ("core",) + (("wings",) if wings else ()):
            sub = folder / "psf_wings" if part == "wings" else folder
            try:
                psf_rules.find_library(
                    sub, req, wings=part == "wings", default=folder.parent.parent == self.mirage_data
                )
            except psf_rules.PsfProblem as exc:
                out.append(Problem(ERROR, str(exc)))
        return out

    def _custom_psf(self, bill: ExposureBill, path: Path, req, factor: float, wings: bool) -> None:
        key = ("custom-psf", path, req, wings)
        if key not in self._cache:
            problems = []
            for part in ("core",) + (("wings",) if wings else ()):
                folder = path / "psf_wings" if part == "wings" else path
                try:
                    hit = psf_rules.find_library(folder, req, wings=part == "wings", default=False)
                except psf_rules.PsfProblem as exc:
                    problems.append(Problem(ERROR, f"custom PSF library: {exc}"))
                    continue
                found = psf_rules.check_wings(hit) if part == "wings" else psf_rules.check_core(hit, factor)
                problems += [Problem(ERROR, f"custom PSF library: {m}") for m in found]
            self._cache[key] = problems
        bill.psf_folder = path
        bill.problems += self._cache[key]

    def _run_time_needs(self, exp: Exposure, bill: ExposureBill) -> None:
        """Ghost stamps (a collection file) and what Mirage fetches from the network while it runs."""
        if exp.instrument == "niriss" and exp.value("simSignals", "add_ghosts") in (True, "True", "true"):
            entry = self._entry("niriss", "ghosts")
            if entry is not None:
                bill.files.append(entry.relative_path)
                if not any((r / "niriss" / "ghosts" / "niriss_ghost_cen.fits").is_file() for r in self.roots):
                    self.to_fetch.add(entry.relative_path)
            bill.other_needs.append("network at run time: the ghost gap summary Mirage downloads from GitHub")
        bkgd = str(exp.value("simSignals", "bkgdrate", "")).strip().lower()
        if bkgd in ("low", "medium", "high") or exp.value("simSignals", "use_dateobs_for_background") in (True, "True"):
            bill.other_needs.append(f"network at run time: jwst_backgrounds' cache for bkgdrate {bkgd!r}")

    def _soss(self, exp: Exposure, bill: ExposureBill) -> None:
        entry = self._entry("niriss", "soss")
        if entry is None:
            bill.problem("SOSS exposure, but the collection has no SOSS PSF files")
            return
        bill.files.append(entry.relative_path)
        folder = entry.install_path
        if not any((root / folder).is_dir() and any((root / folder).iterdir()) for root in self.roots):
            if self.fetch_into is None:
                bill.problem(f"SOSS PSF files missing and {self.mirage_data} is read-only; give --fetch-into DIR")
            else:
                self.to_fetch.add(entry.relative_path)

    # cosmic rays ----------------------------------------------------------

    def _cosmic_rays(self, exp: Exposure, bill: ExposureBill) -> None:
        value = exp.value("cosmicRay", "path")
        if is_none(value):
            return  # no cosmic rays
        library = str(exp.value("cosmicRay", "library", ""))
        if library not in COSMIC_RAY_LIBRARIES:
            if library.upper() in COSMIC_RAY_LIBRARIES:
                bill.problem(
                    f"cosmicRay:library {library!r} must be upper case ({library.upper()}): Mirage finds the files "
                    "but its rate lookup is case-sensitive, so it adds no cosmic rays"
                )
            elif library.upper() == "FLARE":
                bill.problem("cosmicRay:library 'FLARE' (as Mirage's docs spell it) fails in Mirage; write FLARES")
            else:
                bill.problem(f"cosmicRay:library {library!r} is unknown; accepted: {', '.join(COSMIC_RAY_LIBRARIES)}")
            return
        suffix = str(exp.value("cosmicRay", "suffix", ""))
        names = [f"CRs_MCD1.7_{library}_{n:02d}_{suffix}.fits" for n in range(COSMIC_RAY_FILES)]
        path = expand_path(value)
        tail = f"{exp.instrument}/cosmic_ray_library"
        if not self._default_root(path, tail):
            missing = [n for n in names if not (path / n).is_file()]
            if missing:
                bill.problem(f"{len(missing)} of the 10 cosmic-ray files missing in {path}, e.g. {missing[0]}")
            bill.cosmic_ray_folder = path
            return
        key = ("cr", exp.instrument, library, suffix)
        if key not in self._cache:
            entry = self._entry(exp.instrument, "cosmic_ray_library")
            result = None
            for root in self.roots:
                folder = root / tail
                if all((folder / n).is_file() for n in names):
                    result = (folder, [entry.relative_path] if entry else [], [], False)
                    break
            if result is None:
                if entry is None or self.archive_installed(entry) is not None:
                    result = (
                        None,
                        [],
                        [Problem(ERROR, f"no cosmic-ray files {names[0]} .. _09_ in the collection")],
                        False,
                    )
                elif self.fetch_into is None:
                    result = (
                        None,
                        [],
                        [
                            Problem(
                                ERROR,
                                f"cosmic-ray files missing and {self.mirage_data} is read-only; give --fetch-into DIR",
                            )
                        ],
                        False,
                    )
                else:
                    result = (self.fetch_into / tail, [entry.relative_path], [], True)
                    self.to_fetch.add(entry.relative_path)
            self._cache[key] = result
        folder, files, problems, later = self._cache[key]
        bill.cosmic_ray_folder = folder
        bill.files += files
        bill.problems += problems
        if later:

            def recheck(folder=folder, names=names):
                missing = [n for n in names if not (folder / n).is_file()]
                if missing:
                    bill.problem(
                        f"{len(missing)} of the 10 cosmic-ray files not in the collection's library, e.g. {missing[0]}"
                    )

            bill.after_fetch.append(recheck)

    # CRDS ------------------------------------------------------------------

    def _crds(self, exp: Exposure, bill: ExposureBill) -> None:
        base = crds_query(
            exp.instrument, exp.readpatt, exp.array_name, exp.filter, exp.pupil, self.crds_date, self.crds_time
        )
        for key, reftype in CRDS_KEYS.items():
            value = exp.reffiles.get(key, "crds")  # a missing key is looked up (utils.full_paths)
            if is_none(value):
                continue
            if str(value).strip().lower() != "crds":
                if str(value).strip().lower() != "config" and not expand_path(value).is_file():
                    bill.problem(f"Reffiles:{key} file {value} does not exist")
                continue
            query = dict(base)
            if key == "pixelflat" and exp.instrument == "nircam" and exp.mode in ("wfss", "ts_grism"):
                if query["PUPIL"] not in ("GRISMR", "GRISMC"):
                    bill.problem("WFSS or grism time-series exposure whose pupil is not GRISMR/GRISMC")
                    continue
                query["PUPIL"] = "CLEAR"  # Mirage uses the imaging flat (utils.full_paths)
            qkey = tuple(sorted(query.items()))
            self.queries.setdefault(qkey, query)
            bill.crds[key] = (qkey, reftype)
