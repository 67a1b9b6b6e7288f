#!/usr/bin/env python
"""Benchmark: ``mirage-data prepare`` on a 500-exposure program (issue 10, scale).

Run from the repository root with the project's virtualenv::

    python benchmarks/bench_prepare.py               # 500 exposures, 3 repeats
    python benchmarks/bench_prepare.py --exposures 100 --repeats 1     # a quick run

What is timed
-------------
Each row is a whole ``mirage-data prepare`` process (``python -m mirage_data prepare ...``,
wall time from the parent, median over the repeats) on the same folder of 500 Mirage input yaml
files: NIRCam (all ten detectors, 8 filters, all nine readout patterns, imaging and WFSS),
NIRISS (6 filter/pupil pairs, NISRAPID/NIS, imaging and WFSS) and FGS (both guiders, FGSRAPID/
FGS), ``nint`` 1 to 4, every file different (not copies of one). The collection is served over
loopback (the package's static server) with the real catalog's paths and files (small content:
darks of 108 frames of 4x4 pixels, PSF libraries for the filters used, all cosmic-ray files);
CRDS is a loopback server speaking the crds client's JSON-RPC (``tests/crds_service.py``).

* ``baseline``: Mirage 2.5's own CRDS resolution of the same 500 yaml files as its run time does
  it (``crds_tools.dict_from_yaml`` + one ``crds_tools.get_reffiles`` per reference type and
  exposure, i.e. ONE of the three stages that each repeat it), in one process, serverless,
  against the cache prepared here; run once.
* ``dry-run, cold``: empty MIRAGE_DATA and CRDS cache (rules fetched from the CRDS server).
  Target < 10 s.
* ``prepare, cold``: fetches everything over loopback and writes 500 resolved yamls (once).
* ``rerun, all present``: the same command again, serverless CRDS; the inventory's quick check,
  no re-hashing. Target < 30 s.
* ``dry-run, all present``.

Also printed: what the same program would fetch from the real collection (the packaged
catalog's sizes) against the whole default collection, and the same for a small imaging
program.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from astropy.io import fits  # noqa: E402

import crds_service as C  # noqa: E402
import mirage_yamls as M  # noqa: E402
from mirage_data.calibration.crds import SERVERLESS_URL  # noqa: E402
from mirage_data.collection.catalog import Catalog, load_catalog  # noqa: E402
from mirage_data.exposures.rules import READ_PATTERNS, frames_per_group  # noqa: E402
from mirage_data.testing.server import CollectionServer  # noqa: E402

SW = ("F070W", "F090W", "F115W", "F150W", "F200W")
LW = ("F277W", "F356W", "F444W")
NIS_PAIRS = (
    ("CLEAR", "F090W"),
    ("CLEAR", "F150W"),
    ("CLEAR", "F200W"),
    ("F277W", "CLEARP"),
    ("F356W", "CLEARP"),
    ("F444W", "CLEARP"),
)
NIRCAM_DETS = ("A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "B5")


def make_program(folder: Path, n: int, seed: int = 1) -> list[dict]:
    """*n* different yaml files; returns their parameters (instrument, detector, filter, pupil)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(n):
        u = rng.random()
        nint = rng.choice((1, 1, 2, 3, 4))
        if u < 0.6:
            det = rng.choice(NIRCAM_DETS)
            lw = det.endswith("5")
            filt = rng.choice(LW if lw else SW)
            mode, pupil = "imaging", "CLEAR"
            if lw and rng.random() < 0.2:
                mode, pupil = "wfss", "GRISMR"
            patt = rng.choice(list(READ_PATTERNS["nircam"]))
            ngroup = rng.randint(1, max(1, min(10, 108 // frames_per_group("nircam", patt))))
            kw = dict(aperture=f"NRC{det}_FULL", filter=filt, pupil=pupil, mode=mode, readpatt=patt, ngroup=ngroup)
            inst, key = "nircam", ("nircam", det, filt, "CLEAR")
        elif u < 0.85:
            filt, pupil = rng.choice(NIS_PAIRS)
            mode = "imaging"
            if filt == "CLEAR" and rng.random() < 0.2:
                mode, filt = "wfss", "GR150R"
            patt = rng.choice(("NISRAPID", "NIS"))
            ngroup = rng.randint(1, 108 // frames_per_group("niriss", patt))
            kw = dict(filter=filt, pupil=pupil, mode=mode, readpatt=patt, ngroup=min(ngroup, 20))
            inst, key = "niriss", ("niriss", "NIS", "CLEAR" if filt == "GR150R" else filt, pupil)
        else:
            g = rng.choice((1, 2))
            patt = rng.choice(("FGSRAPID", "FGS"))
            kw = dict(aperture=f"FGS{g}_FULL", readpatt=patt, ngroup=rng.randint(1, 20))
            inst, key = "fgs", ("fgs", f"GUIDER{g}", "NA", "NA")
        kw["cr_library"] = rng.choice(("SUNMAX", "SUNMIN", "FLARES"))
        M.write_yaml(
            folder,
            f"jw{i:05d}_{inst}.yaml",
            inst,
            nint=nint,
            mirage_data="/generator/mirage_data",
            output_file=f"jw01234001001_01101_{i:05d}_{inst}_uncal.fits",
            **kw,
        )
        made.append(key)
    return made


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _fits(hdus) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def make_collection(root: Path, keys: list, catalog: Catalog) -> Catalog:
    """The real catalog's files for the instruments used, small content, and a catalog with sizes."""
    import numpy as np

    psf = {}
    for inst, det, filt, pupil in set(keys):
        psf.setdefault((inst, det), set()).add((filt, pupil))
    entries, checks = [], {}
    cr_stamp = _fits([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 21, 21), np.float32))])
    for e in catalog:
        if e.group in ("ghosts", "soss", "distortion") or (e.is_dark and e.dark_kind != "linearized"):
            continue
        if e.is_dark:
            data = gzip.compress(M.dark_bytes(e.instrument, e.detectors[0], "linearized", frames=108), 1, mtime=0)
        elif e.group == "cosmic_ray_library":
            label = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[e.instrument]
            dets = (
                NIRCAM_DETS
                if e.instrument == "nircam"
                else ("NIS",)
                if e.instrument == "niriss"
                else ("GUIDER1", "GUIDER2")
            )
            data = _tar(
                [
                    (
                        f"mirage_data/{e.instrument}/cosmic_ray_library/CRs_MCD1.7_{lib}_{n:02d}_IPC_{label}_{d}.fits",
                        cr_stamp,
                    )
                    for lib in ("SUNMAX", "SUNMIN", "FLARES")
                    for n in range(10)
                    for d in dets
                ]
            )
        else:
            members = []
            for (inst, det), pairs in sorted(psf.items()):
                if inst != e.instrument or (e.group == "psf_library" and det not in e.detectors):
                    continue
                for filt, pupil in sorted(pairs):
                    core, wings, det_name = M.psf_names(inst, det, filt, pupil)
                    hf, hp = (pupil, "CLEARP") if inst == "niriss" and filt == "CLEAR" else (filt, pupil)
                    cards = M.psf_cards(inst, det_name, hf, hp)
                    folder = f"mirage_data/{inst}/gridded_psf_library"
                    if e.group == "psf_library":
                        members.append((f"{folder}/{core}", M.psf_core_bytes(cards)))
                    if e.group == "psf_wings" or inst != "nircam":
                        members.append((f"{folder}/psf_wings/{wings}", M.psf_wings_bytes(cards)))
            data = _tar(members)
        path = root / e.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        checks[e.relative_path] = (len(data), hashlib.sha256(data).hexdigest())
        entries.append(e)
    small = Catalog(entries=tuple(entries), base_url=root.as_uri() + "/", source="bench")
    small = small.with_checksums(checks)
    small = replace(small, entries=tuple(replace(x, approx_size=x.size) for x in small.entries))
    small.write(root / "catalog.tsv")
    return small


def run(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mirage_data", "prepare", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if p.returncode not in (0, 2):
        raise SystemExit(f"prepare failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return seconds, p.stdout


def summary(text: str) -> str:
    lines = [line for line in text.splitlines() if re.match(r"\d+ yaml files|CRDS: context|fetched ", line)]
    return " | ".join(lines)


BASELINE = r"""
import glob, json, os, sys, time
import yaml
from mirage.reference_files import crds_tools
from mirage.utils.constants import CRDS_FILE_TYPES
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.yaml")))
t0 = time.perf_counter()
n = 0
for f in files:
    params = yaml.safe_load(open(f))
    query = crds_tools.dict_from_yaml(params)
    for key, reftype in CRDS_FILE_TYPES.items():
        if key == "transmission":
            continue
        q = dict(query)
        if key == "pixelflat" and params["Inst"]["mode"] in ("wfss", "ts_grism") and q["INSTRUME"] == "NIRCAM":
            q["PUPIL"] = "CLEAR"
        crds_tools.get_reffiles(q, [reftype])
        n += 1
print(json.dumps({"seconds": time.perf_counter() - t0, "lookups": n}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        t0 = time.perf_counter()
        keys = make_program(work / "program", opts.exposures)
        for inst, flist in (
            ("NIRCAM", SW + LW),
            ("NIRISS", ("CLEAR", "F277W", "F356W", "F444W", "GR150R")),
            ("FGS", ("N/A", "NA")),
        ):
            C.FILTERS[inst] = tuple(flist)
        C.write_crds_files(work / "crds_server")
        catalog = make_collection(work / "collection", keys, load_catalog())
        print(
            f"setup: {opts.exposures} yaml files, {len(catalog)} collection files, CRDS rules "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
        env["PYTHONPATH"] = str(REPO / "src")
        rows: dict[str, list[float]] = {}
        with CollectionServer(work / "collection") as files, C.CrdsServer(work / "crds_server") as crds:

            def args(i: int, server: str, dry: bool) -> list[str]:
                out = [
                    str(work / "program"),
                    "--mirage-data",
                    str(work / f"md{i}"),
                    "--out",
                    str(work / f"out{i}"),
                    "--catalog",
                    str(work / "collection" / "catalog.tsv"),
                    "--mirror",
                    files.url,
                    "--crds-path",
                    str(work / f"crds{i}"),
                    "--crds-server",
                    server,
                    "-q",
                ]
                return out + (["--dry-run"] if dry else [])

            for i in range(opts.repeats):
                s, text = run(args(i, crds.url, True), env)
                rows.setdefault("dry-run, cold", []).append(s)
                if i == 0:
                    print("  dry-run:", summary(text), flush=True)
            s, text = run(args(0, crds.url, False), env)
            rows["prepare, cold (fetch all)"] = [s]
            print("  prepare:", summary(text), flush=True)
            for _ in range(opts.repeats):
                s, text = run(args(0, SERVERLESS_URL, False), env)
                rows.setdefault("rerun, all present", []).append(s)
                s, _ = run(args(0, SERVERLESS_URL, True), env)
                rows.setdefault("dry-run, all present", []).append(s)
            print("  rerun:", summary(text), flush=True)
            # Mirage's own per-exposure CRDS resolution (one stage), serverless, same cache
            cenv = dict(env, CRDS_PATH=str(work / "crds0"), CRDS_SERVER_URL=SERVERLESS_URL, CRDS_CONTEXT=C.BUILD)
            t = time.perf_counter()
            p = subprocess.run(
                [sys.executable, "-c", BASELINE, str(work / "program")],
                env=cenv,
                cwd=work,
                capture_output=True,
                text=True,
            )
            if p.returncode:
                raise SystemExit(p.stderr[-3000:])
            rows["baseline: Mirage crds_tools, 1 of 3 stages"] = [time.perf_counter() - t]
            print("  baseline:", p.stdout.strip().splitlines()[-1], flush=True)

        base = rows["baseline: Mirage crds_tools, 1 of 3 stages"][0]
        print(f"\nwhole processes, wall seconds (median of {opts.repeats} where repeated); ratio = baseline / row")
        for name, values in rows.items():
            m = statistics.median(values)
            print(f"  {name:45s} {m:8.2f} s   x{base / m:6.2f}   ({', '.join(f'{v:.2f}' for v in values)})")
        print(
            f"targets: dry-run < 10 s: {statistics.median(rows['dry-run, cold']):.2f} s; "
            f"rerun < 30 s: {statistics.median(rows['rerun, all present']):.2f} s"
        )

        # what the program would fetch from the REAL collection (packaged catalog sizes)
        print("\nagainst the real collection (packaged catalog, approximate published sizes):")
        real = subprocess.run(
            [
                sys.executable,
                "-m",
                "mirage_data",
                "prepare",
                str(work / "program"),
                "--mirage-data",
                str(work / "empty"),
                "--out",
                str(work / "o"),
                "--crds-path",
                str(work / "crds0"),
                "--crds-server",
                SERVERLESS_URL,
                "--crds-context",
                C.BUILD,
                "--dry-run",
                "-q",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        print("  500-exposure program:", summary(real.stdout).split(" | ")[0])
        small = work / "small_program"
        for det in NIRCAM_DETS:
            for dither in range(4):
                filt = "F444W" if det.endswith("5") else "F150W"
                M.write_yaml(
                    small,
                    f"jw_{det}_{dither}.yaml",
                    "nircam",
                    aperture=f"NRC{det}_FULL",
                    filter=filt,
                    readpatt="DEEP8",
                    ngroup=5,
                    nint=1,
                    mirage_data="/generator/mirage_data",
                )
        real = subprocess.run(
            [
                sys.executable,
                "-m",
                "mirage_data",
                "prepare",
                str(small),
                "--mirage-data",
                str(work / "empty"),
                "--out",
                str(work / "o2"),
                "--crds-path",
                str(work / "crds0"),
                "--crds-server",
                SERVERLESS_URL,
                "--crds-context",
                C.BUILD,
                "--dry-run",
                "-q",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        print("  NIRCam imaging, 10 detectors x 4 dithers, F150W+F444W:", summary(real.stdout).split(" | ")[0])
    finally:
        if opts.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
