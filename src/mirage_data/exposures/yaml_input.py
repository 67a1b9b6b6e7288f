"""Reading Mirage input yaml files (as ``mirage.yaml.yaml_generator`` writes them) into `Exposure`.

A file that cannot be used raises `ExposureError` with one line saying what is wrong and what
is accepted; the caller carries on with the other files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .rules import INSTRUMENTS, MODES, READ_PATTERNS, aperture_prefix, collection_detector

try:  # the C loader is ~10x faster; PyYAML falls back to pure Python where libyaml is missing
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

YAML_SUFFIXES = (".yaml", ".yml")


class ExposureError(ValueError):
    """A yaml file Mirage could not run (unreadable, malformed, unknown instrument...)."""


@dataclass
class Exposure:
    """One Mirage exposure, as its yaml file describes it.

    Attributes
    ----------
    path : Path
        The yaml file.
    params : dict
        The whole yaml content (written back, resolved, by `resolved.write_resolved_yaml`).
    instrument : str
        ``nircam``, ``niriss`` or ``fgs``.
    mode : str
    array_name, readpatt, filter, pupil : str
    ngroup, nint : int
    detector : str
        Collection detector name (``A1``, ``NIS``, ``GUIDER1``).
    """

    path: Path
    params: dict = field(repr=False)
    instrument: str
    mode: str
    array_name: str
    readpatt: str
    ngroup: int
    nint: int
    filter: str
    pupil: str
    detector: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def reffiles(self) -> dict:
        return self.params["Reffiles"]

    @property
    def psf_detector(self) -> str:
        """The detector as Mirage's PSF search names it: the aperture prefix (``NRCA5``, ``FGS1``)."""
        return aperture_prefix(self.array_name)

    def value(self, section: str, key: str, default=None):
        """A yaml value as Mirage reads it (``None`` for missing, ``None``/``none`` strings kept)."""
        return (self.params.get(section) or {}).get(key, default)


def is_none(value) -> bool:
    """Mirage's 'not set' (``None`` or the strings ``none``/``None``)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", ""))


def expand_path(value: str) -> Path:
    """A yaml path as Mirage resolves it (``abspath(expandvars())``)."""
    return Path(os.path.abspath(os.path.expandvars(str(value))))


def find_yaml_files(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The yaml files named or contained (not recursively) in *inputs*, sorted per folder.

    Returns (files, [(input, problem)]) for inputs that do not exist or hold no yaml file.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in YAML_SUFFIXES and q.is_file())
            if not found:
                problems.append((p, "folder holds no .yaml/.yml file"))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            problems.append((p, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _section(params: dict, name: str) -> dict:
    section = params.get(name)
    if not isinstance(section, dict):
        raise ExposureError(f"no '{name}:' section (a Mirage input yaml has Inst, Readout, Reffiles, ...)")
    return section


def _int(section: dict, sname: str, key: str, minimum: int = 1) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExposureError(f"{sname}:{key} is {value!r}; accepted: an integer >= {minimum}")
    return value


def read_exposure(path: str | os.PathLike) -> Exposure:
    """Read one Mirage input yaml file.

    Raises
    ------
    ExposureError
        One line: the file cannot be read, is not YAML, lacks a key Mirage needs, or names an
        instrument, readout pattern or mode Mirage does not know.
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureError(f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        params = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ExposureError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(params, dict):
        raise ExposureError("not a Mirage input yaml (expected a mapping with Inst, Readout, Reffiles, ...)")
    inst = _section(params, "Inst")
    readout = _section(params, "Readout")
    _section(params, "Reffiles")
    raw_instrument = str(inst.get("instrument", "")).strip()
    instrument = INSTRUMENTS.get(raw_instrument.lower())
    if instrument is None:
        raise ExposureError(f"unknown instrument {raw_instrument!r}; accepted: NIRCam, NIRISS, FGS")
    mode = str(inst.get("mode", "imaging")).strip().lower()
    if mode not in MODES[instrument]:
        raise ExposureError(f"unknown {raw_instrument} mode {mode!r}; accepted: {', '.join(MODES[instrument])}")
    readpatt = str(readout.get("readpatt", "")).strip().upper()
    if readpatt not in READ_PATTERNS[instrument]:
        raise ExposureError(
            f"unknown {raw_instrument} readout pattern {readout.get('readpatt')!r}; "
            f"accepted: {', '.join(READ_PATTERNS[instrument])}"
        )
    array_name = str(readout.get("array_name", "")).strip()
    prefix = aperture_prefix(array_name) if array_name else ""
    valid = {
        "nircam": {f"NRC{m}{n}" for m in "AB" for n in "12345"},
        "niriss": {"NIS"},
        "fgs": {"FGS1", "FGS2"},
    }[instrument]
    if prefix not in valid:
        raise ExposureError(
            f"Readout:array_name {array_name!r} is not a {raw_instrument} aperture "
            f"(accepted: names starting {', '.join(sorted(valid))}, e.g. {sorted(valid)[0]}_FULL)"
        )
    for key in ("filter", "pupil"):
        if key not in readout:
            raise ExposureError(f"no Readout:{key} (Mirage needs filter and pupil)")
    for name in ("cosmicRay", "simSignals"):
        _section(params, name)
    return Exposure(
        path=path,
        params=params,
        instrument=instrument,
        mode=mode,
        array_name=array_name,
        readpatt=readpatt,
        ngroup=_int(readout, "Readout", "ngroup"),
        nint=_int(readout, "Readout", "nint"),
        filter=str(readout["filter"]).strip(),
        pupil=str(readout["pupil"]).strip(),
        detector=collection_detector(instrument, array_name),
    )
