"""Benchmark: mirage-data's native dark linearization against the JWST pipeline's steps.

    flock /tmp/mirage-heavy.lock python benchmarks/bench_linearize.py [--groups 10 40 108] [--repeat 3]

Makes synthetic full-frame NIRCam (NRCA1, RAPID) raw darks of 10, 40 and 108 groups (the
collection's darks have 108 frames) and JWST reference files in a temporary folder
(tests/jwst_reference_files.py), then linearizes each dark several times with each tool,
every run a fresh whole process (interpreter start, imports, reading, processing, writing):

* ``ours``: ``mirage_data.darks.linearize.linearize_dark`` (reads the raw dark and the
  reference files, writes the linearized dark);
* ``jwst``: what Mirage does today: load the raw dark as a RampModel, run DQInit, Saturation,
  SuperBias, RefPix and Linearity (jwst 3.0, override reference files, fully offline), compute
  SBANDREFPIX and write the same linearized-dark file (SCI, SBANDREFPIX, ZEROFRAME,
  ZEROSBANDREFPIX) with astropy.

Durability policy, the same for both: the output is written under a temporary name, flushed
to disk (fsync of the file), renamed into place, and the folder flushed, before the process
exits. Before every run the inputs (raw dark and reference files) are read once by the parent,
so that both tools read them from the page cache whatever ran before.

For each run it records the wall time of the whole child process, the time of the work inside
it (imports excluded) and the child's peak resident memory (``VmHWM``: the peak of that
process alone). It prints, per ramp length, medians and the ratios against the targets: the
whole process at least 10x faster, at most 1/4 of the pipeline's peak memory. Needs the
``bench`` extra (jwst). Runs need several GB (the pipeline holds the ramp as float32 several
times): run under the heavy lock.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPER = HERE.parent / "tests" / "jwst_reference_files.py"


def _helper():
    spec = importlib.util.spec_from_file_location("jwst_reference_files", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peak_rss() -> int:
    """Peak resident memory of this process image (bytes)."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    if match:
        return int(match.group(1)) * 1024
    import resource  # not Linux: ru_maxrss (kB on Linux, bytes on macOS)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


# ---------------------------------------------------------------------------------------------
# Children


def child_ours(raw: str, out: str, refs: dict) -> dict:
    t0 = time.perf_counter()
    from mirage_data.darks.linearize import linearize_dark

    t1 = time.perf_counter()
    linearize_dark(raw, out, use_crds=False, fsync=True, **refs)
    t2 = time.perf_counter()
    return {"imports": t1 - t0, "seconds": t2 - t1, "peak": _peak_rss()}


def child_jwst(raw: str, out: str, refs: dict, crds_cache: str) -> dict:
    helper = _helper()
    os.environ.update(helper.offline_crds_environment(crds_cache))
    t0 = time.perf_counter()
    import jwst.dq_init  # noqa: F401
    import jwst.linearity  # noqa: F401
    import jwst.refpix  # noqa: F401
    import jwst.saturation  # noqa: F401
    import jwst.superbias  # noqa: F401
    import numpy as np
    from astropy.io import fits

    from mirage_data.io.atomic import atomic_path

    t1 = time.perf_counter()
    result = helper.run_jwst_steps(raw, refs)
    header = fits.getheader(raw)
    primary = fits.PrimaryHDU()
    for key in ("READPATT", "NINTS", "NGROUPS", "NFRAMES", "NSKIP", "DETECTOR", "INSTRUME", "SLOWAXIS", "FASTAXIS"):
        primary.header[key] = header[key]
    sci, sb = result["sci"], result["sbandrefpix"]
    hdus = fits.HDUList(
        [
            primary,
            fits.ImageHDU(sci, name="SCI"),
            fits.ImageHDU(sb, name="SBANDREFPIX"),
            fits.ImageHDU(np.ascontiguousarray(sci[:, 0]), name="ZEROFRAME"),
            fits.ImageHDU(np.ascontiguousarray(sb[:, 0]), name="ZEROSBANDREFPIX"),
        ]
    )
    with atomic_path(out, durable=True) as tmp:  # the same durability policy as ours
        hdus.writeto(tmp)
    t2 = time.perf_counter()
    return {"imports": t1 - t0, "seconds": t2 - t1, "peak": _peak_rss()}


# ---------------------------------------------------------------------------------------------
# Parent


def run_child(kind: str, raw: Path, out: Path, refs: dict, crds_cache: Path) -> dict:
    if out.exists():
        out.unlink()
    os.sync()  # start each run without the previous run's dirty pages being written back
    # both tools read their inputs from the page cache: a pipeline run (8 GB at 108 groups) can
    # evict them, which would slow whichever run comes next
    for path in [raw, *refs.values()]:
        with open(path, "rb") as f:
            while f.read(16 << 20):
                pass
    payload = json.dumps(
        {"raw": str(raw), "out": str(out), "refs": {k: str(v) for k, v in refs.items()}, "crds_cache": str(crds_cache)}
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", kind, payload], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    out.unlink()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 40, 108], help="ramp lengths (default 10 40 108)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool and ramp (median reported)")
    parser.add_argument("--workdir", type=Path, help="folder for the files (default: a temporary one)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, payload = args.child
        p = json.loads(payload)
        if kind == "ours":
            result = child_ours(p["raw"], p["out"], p["refs"])
        else:
            result = child_jwst(p["raw"], p["out"], p["refs"], p["crds_cache"])
        print(json.dumps(result))
        return 0

    helper = _helper()
    with tempfile.TemporaryDirectory(prefix="bench_linearize_", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        print(f"making reference files and raw darks in {tmp} ...", flush=True)
        print(f"load average (1, 5, 15 min) at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        refs = helper.write_reference_set(tmp / "refs", "NRCA1", ncoeffs=5)
        crds_cache = tmp / "crds_cache"
        rows = []
        for ngroups in args.groups:
            raw = helper.write_raw_dark(tmp / f"raw_{ngroups}_uncal.fits", "NRCA1", ngroups=ngroups)
            size = raw.stat().st_size / 2**20
            results = {"ours": [], "jwst": []}
            for r in range(args.repeat):
                for kind in ("ours", "jwst"):
                    res = run_child(kind, raw, tmp / f"out_{kind}.fits", refs, crds_cache)
                    results[kind].append(res)
                    print(
                        f"  {ngroups:>3} groups  run {r + 1}/{args.repeat}  {kind:<4}  work {res['seconds']:7.2f} s  "
                        f"process {res['wall']:7.2f} s  peak RSS {res['peak'] / 2**20:7.0f} MB",
                        flush=True,
                    )
            summary = {
                kind: {
                    "seconds": statistics.median(x["seconds"] for x in rs),
                    "wall": statistics.median(x["wall"] for x in rs),
                    "peak": statistics.median(x["peak"] for x in rs),
                }
                for kind, rs in results.items()
            }
            rows.append((ngroups, size, summary))
            os.unlink(raw)

    print()
    print("Full-frame NIRCam raw dark (NRCA1, RAPID), medians of", args.repeat, "runs each")
    header = (
        f"{'groups':>6} {'raw MB':>7} | {'ours s':>7} {'jwst s':>7} {'speed-up':>8} | "
        f"{'ours proc s':>11} {'jwst proc s':>11} {'speed-up':>8} | {'ours MB':>8} {'jwst MB':>8} {'mem ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for ngroups, size, s in rows:
        o, j = s["ours"], s["jwst"]
        speed = j["seconds"] / o["seconds"]
        speed_proc = j["wall"] / o["wall"]
        mem = o["peak"] / j["peak"]
        if ngroups == max(r[0] for r in rows):  # the targets are for the collection's length
            ok = speed_proc >= 10 and mem <= 0.25
        print(
            f"{ngroups:>6} {size:>7.0f} | {o['seconds']:>7.2f} {j['seconds']:>7.2f} {speed:>7.1f}x | "
            f"{o['wall']:>11.2f} {j['wall']:>11.2f} {speed_proc:>7.1f}x | {o['peak'] / 2**20:>8.0f} "
            f"{j['peak'] / 2**20:>8.0f} {mem:>9.3f}"
        )
    print()
    print("s: time of the work in the child (read inputs, linearize, write the output; imports excluded)")
    print("proc s: wall time of the whole child process (interpreter start and imports included)")
    print("MB: peak resident memory of the child (VmHWM)")
    print("durability: both outputs written to a temporary name, fsync'ed, renamed, folder fsync'ed")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    longest = max(r[0] for r in rows)
    print(
        f"targets at {longest} groups: whole-process speed-up >= 10x and memory ratio <= 0.25: "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
