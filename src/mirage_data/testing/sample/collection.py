"""Which files a sample collection holds, and writing it (idempotently) with its catalog."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from mirage_data.collection.catalog import (
    DETECTORS,
    Catalog,
    CatalogEntry,
    CatalogError,
    linearized_name,
    load_catalog,
)

from .archives import write_archive
from .common import write_and_hash
from .darks import write_dark_pair

#: Name of the catalog file written at the root of a sample collection.
CATALOG_NAME = "catalog.tsv"

#: Parameters of the last generation, so a call with other parameters regenerates.
_PARAMS_NAME = ".mirage-data-sample.json"

#: Bump when the generator's output changes, so old sample folders are regenerated.
_GENERATOR_VERSION = 1

#: Second exposure (raw + linearized) added with ``extra_darks=True``.
_EXTRA_DARK_DETECTORS = {"nircam": ("A1",), "niriss": ("NIS",), "fgs": ("GUIDER2",)}

# --------------------------------------------------------------------------------------------
# Which files
# --------------------------------------------------------------------------------------------


def sample_entries(catalog: Catalog | None = None, *, extra_darks: bool = True) -> list[CatalogEntry]:
    """The entries of the real catalog that a sample collection contains.

    Every non-dark file (the 13 tarballs of the catalog), and for every detector the first
    raw dark of the catalog together with its linearized counterpart; with *extra_darks* also
    a second exposure (raw + linearized) for NIRCam A1, NIRISS and FGS GUIDER2, so that keeping "one
    dark per detector" is a real choice there.

    Parameters
    ----------
    catalog : Catalog, optional
        The catalog to pick from (default: the packaged real collection).
    extra_darks : bool, optional
        Add the second exposures described above (default True).

    Returns
    -------
    list of CatalogEntry
        In the catalog's order.
    """
    catalog = load_catalog() if catalog is None else catalog
    wanted = [e.relative_path for e in catalog if not e.is_dark]
    for instrument, detectors in DETECTORS.items():
        for detector in detectors:
            raws = [
                e
                for e in catalog
                if e.instrument == instrument
                and e.dark_kind == "raw"
                and e.detectors == (detector,)
                and linearized_name(e.relative_path) in catalog
            ]
            count = 2 if extra_darks and detector in _EXTRA_DARK_DETECTORS[instrument] else 1
            if len(raws) < count:
                raise CatalogError(
                    f"catalog has fewer than {count} raw+linearized dark pairs for {instrument} {detector}"
                )
            for raw in raws[:count]:
                wanted += [raw.relative_path, linearized_name(raw.relative_path)]
    return list(catalog.subset(wanted))


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def make_sample_collection(
    root: str | os.PathLike[str], *, ngroups: int = 2, extra_darks: bool = True, seed: int = 0
) -> Catalog:
    """Write a sample collection below *root* and return its catalog.

    The files of `sample_entries` are written at their catalog relative paths below *root*,
    then ``root/catalog.tsv`` (`Catalog.write`) with their exact ``size`` and ``sha256`` and
    ``base_url`` set to ``root.as_uri() + "/"``. Every file is first written under a hidden
    temporary name in its folder and renamed when complete, and the catalog is written last,
    so an interrupted run never leaves a partial file at a final path nor a catalog that
    names missing files.

    Idempotent: when ``root/catalog.tsv`` exists, was written by a generation with the same
    parameters and every file it lists exists with the recorded size, nothing is generated
    (only the catalog's ``base_url`` is rewritten if the folder has moved).

    Parameters
    ----------
    root : str or path-like
        Folder of the collection (created if needed).
    ngroups : int, optional
        Groups per dark exposure (default 2). Darks are full frame with 1 integration; each
        group (and each zero frame) adds about 3 MB to a raw and 4 MB to a linearized dark:
        with 2 groups about 9 and 13 MB, 340 MB for the whole default sample.
    extra_darks : bool, optional
        Add a second exposure for NIRCam A1, NIRISS and FGS GUIDER2 (default True).
    seed : int, optional
        Seed of the synthetic data (default 0); the same seed gives the same bytes (with the
        same numpy and isal versions: their random streams and deflate output are not
        promised to stay the same across releases).

    Returns
    -------
    Catalog
        The sample's catalog, equal to ``load_catalog(root / "catalog.tsv")``.

    Raises
    ------
    ValueError
        If *ngroups* is not a positive integer.
    """
    if isinstance(ngroups, bool) or not isinstance(ngroups, (int, np.integer)) or ngroups < 1:
        raise ValueError(f"ngroups must be a positive integer, not {ngroups!r}")
    ngroups, seed = int(ngroups), int(seed)
    root = Path(root).expanduser().resolve()
    catalog_path = root / CATALOG_NAME
    base_url = root.as_uri() + "/"
    params = {
        "generator_version": _GENERATOR_VERSION,
        "ngroups": ngroups,
        "extra_darks": bool(extra_darks),
        "seed": seed,
    }

    existing = _existing_sample(root, params)
    if existing is not None:
        if existing.base_url != base_url:  # the folder was moved or copied: just re-point it
            _write_catalog(replace(existing, base_url=base_url), catalog_path)
            return load_catalog(catalog_path)
        return existing

    root.mkdir(parents=True, exist_ok=True)
    for stale in (catalog_path, root / _PARAMS_NAME):  # the old catalog no longer holds
        stale.unlink(missing_ok=True)
    entries = sample_entries(extra_darks=extra_darks)
    by_path = {e.relative_path: e for e in entries}

    jobs: list[Callable[[], dict[str, tuple[int, str]]]] = []
    # Darks first: they are the long jobs, so the pool stays busy to the end.
    for entry in entries:
        if entry.dark_kind == "raw":
            linearized = by_path[linearized_name(entry.relative_path)]
            jobs.append(partial(write_dark_pair, root, entry, linearized, ngroups, seed))
    for entry in entries:
        if not entry.is_dark:
            jobs.append(partial(write_archive, root, entry, seed))

    checksums: dict[str, tuple[int, str]] = {}
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # numpy, isal and hashlib release the GIL
        for result in pool.map(_call, jobs):
            checksums.update(result)

    sample = Catalog(entries=tuple(entries), base_url=base_url, source=str(catalog_path))
    sample = sample.with_checksums(checksums)
    # approx_size of the sample's own files, so sizes shown for the sample are the sample's.
    sample = replace(sample, entries=tuple(replace(e, approx_size=e.size or 0) for e in sample.entries))
    write_and_hash(root / _PARAMS_NAME, (json.dumps(params, sort_keys=True) + "\n").encode())
    _write_catalog(sample, catalog_path)
    return load_catalog(catalog_path)


def _call(job: Callable[[], dict[str, tuple[int, str]]]) -> dict[str, tuple[int, str]]:
    return job()


def _existing_sample(root: Path, params: dict) -> Catalog | None:
    """The catalog of a complete earlier generation with the same parameters, else None."""
    try:
        if json.loads((root / _PARAMS_NAME).read_text("utf-8")) != params:
            return None
        catalog = load_catalog(root / CATALOG_NAME)
    except (OSError, ValueError):  # CatalogError and JSONDecodeError are ValueErrors
        return None
    if len(catalog) == 0:
        return None
    for entry in catalog:
        try:
            if entry.size is None or (root / entry.relative_path).stat().st_size != entry.size:
                return None
        except OSError:
            return None
    return catalog


def _write_catalog(catalog: Catalog, path: Path) -> None:
    catalog.write(path)  # atomic
