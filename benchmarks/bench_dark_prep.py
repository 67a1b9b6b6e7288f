"""Prepared darks against Mirage 2.5's own DarkPrep: time and peak memory, whole processes.

One command::

    flock /tmp/mirage-heavy.lock python benchmarks/bench_dark_prep.py [--repeat 3] [--work DIR]

Writes (once, reused) a synthetic 108-frame NIRCam NRCA1 linearized dark (2048 x 2048, SCI,
SBANDREFPIX, ZEROFRAME, ZEROSBANDREFPIX float32, 3.6 GB) and a 27-frame one, and two Mirage
yaml files on the 108-frame dark:

* ``NRCA1_FULL`` DEEP8, 5 groups (frames 0-99; each group the mean of 8 of them);
* ``NRCA1_SUB160`` BRIGHT2, 10 groups.

Each case runs as a fresh Python process, alternately: Mirage (``DarkPrep(offline=True)``,
``prepare()``) and ours (``mirage_data.darks.prep.prepare_dark``). Timed: the process from start
to exit (interpreter start, imports, reading the dark, writing the product); peak memory: the
child's peak resident set size (``VmHWM``, reported by the child itself). Printed: medians, and the ratios Mirage /
ours for time (target >= 10) and memory (target >= 4). Then our peak memory for both cases from the 27-frame
dark against the 108-frame one (streaming: independent of the dark's length). The products are checked equal first.

Durability: neither program flushes its product to disk (Mirage: astropy ``writeto``; ours: written
under a temporary name and renamed, ``durable=False``); both leave it in the page cache, and both
replace the product of the previous run. Nothing is dropped from the page cache between runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.io.fits import ImageSpec, write_fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' yaml writer
from dark_prep_cases import write_yaml as write_case_yaml  # noqa: E402

N = 2048

#: Printed with the results: what both sides do about flushing their output.
DURABILITY = "durability: both without fsync (products left in the page cache; each run replaces the previous one)"


def write_dark(path: Path, nframes: int, seed: int = 0) -> Path:
    """A linearized NRCA1 dark written plane by plane (bounded memory)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.002, 0.02, (N, N)).astype(np.float32)
    bias = rng.normal(12000, 300, (N, N)).astype(np.float32)
    h = fits.Header()
    for key, value in dict(
        INSTRUME="NIRCAM",
        DETECTOR="NRCA1",
        READPATT="RAPID",
        NINTS=1,
        NGROUPS=nframes,
        NFRAMES=1,
        NSKIP=0,
        FASTAXIS=-1,
        SLOWAXIS=2,
        TFRAME=10.73677,
        TGROUP=10.73677,
        R_LINEAR="jwst_nircam_linearity_0052.fits",
        R_MASK="jwst_nircam_mask_0076.fits",
        R_SATURA="jwst_nircam_saturation_0094.fits",
        R_SUPERB="jwst_nircam_superbias_0162.fits",
    ).items():
        h[key] = value
    shape4, shape3 = (1, nframes, N, N), (1, N, N)
    specs = [
        ImageSpec("SCI", shape4, np.float32),
        ImageSpec("SBANDREFPIX", shape4, np.float32),
        ImageSpec("ZEROFRAME", shape3, np.float32),
        ImageSpec("ZEROSBANDREFPIX", shape3, np.float32),
    ]
    with write_fits(path, h, specs) as out:
        for k in range(nframes):
            sci = rate * (10.73677 * k) + rng.standard_normal((N, N), np.float32) * 5
            if k == 0:  # before SCI is written: may_modify converts the array in place
                out.write_plane("ZEROFRAME", 0, sci - 1)
                out.write_plane("ZEROSBANDREFPIX", 0, bias)
            out.write_plane("SCI", k, sci, may_modify=True)
            out.write_plane("SBANDREFPIX", k, bias + rng.standard_normal((N, N), np.float32), may_modify=True)
    return path


def write_yaml(path: Path, dark: Path, aperture: str, readpatt: str, ngroup: int, out_dir: Path) -> Path:
    """A NIRCam imaging yaml for one integration of *dark*: the equivalence tests' own writer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_case_yaml(
        path,
        instrument="nircam",
        aperture=aperture,
        readpatt=readpatt,
        ngroup=ngroup,
        nint=1,
        out_dir=out_dir,
        linearized=dark,
    )


MIRAGE = "from mirage.dark.dark_prep import DarkPrep; d = DarkPrep(offline=True); d.paramfile = {y!r}; d.prepare()"
OURS = "from mirage_data.darks.prep import prepare_dark; prepare_dark({y!r}, {out!r})"


#: The child reports its own peak resident set (VmHWM): the rusage of a child (``wait4``) also
#: counts the parent's resident set at the fork, which would hide a small child.
REPORT = "; import sys; sys.stdout.flush(); print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))"


def run(code: str, cwd: Path, env: dict) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a fresh Python running *code*."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code + REPORT], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"benchmark process failed ({p.returncode}):\n{p.stderr[-3000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("VmHWM")][-1]
    return seconds, int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each program per case (median) [3]")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mirage-data-bench-dark-prep"), help="work folder")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    print("writing the darks (once)...", flush=True)
    long_dark = write_dark(work / "darks" / "nrca1_108_linear_dark_prep_object.fits", 108)
    short_dark = write_dark(work / "short" / "nrca1_27_linear_dark_prep_object.fits", 27, seed=1)
    env = dict(
        os.environ,
        MIRAGE_DATA=str(work),
        CRDS_PATH=str(work / "crds_cache"),
        CRDS_SERVER_URL="https://jwst-serverless-mode.stsci.edu",
    )
    cases = {
        "FULL DEEP8 x5": ("NRCA1_FULL", "DEEP8", 5),
        "SUB160 BRIGHT2 x10": ("NRCA1_SUB160", "BRIGHT2", 10),
    }
    print(DURABILITY)
    print(f"{'case':20s} {'program':8s} {'median s':>9s} {'peak MB':>9s}   runs (s)")
    ratios = {}
    for label, (aperture, patt, ngroup) in cases.items():
        tag = label.split()[0].lower()
        y = write_yaml(work / f"bench_{tag}.yaml", long_dark, aperture, patt, ngroup, work / "mirage_out")
        times = {"mirage": [], "ours": []}
        mems = {"mirage": [], "ours": []}
        for _ in range(args.repeat):
            for prog, code in (
                ("mirage", MIRAGE.format(y=str(y))),
                ("ours", OURS.format(y=str(y), out=str(work / "ours_out"))),
            ):
                s, mb = run(code, work, env)
                times[prog].append(s)
                mems[prog].append(mb)
        for prog in ("mirage", "ours"):
            runs = " ".join(f"{t:.2f}" for t in times[prog])
            print(
                f"{label:20s} {prog:8s} {statistics.median(times[prog]):9.2f} "
                f"{statistics.median(mems[prog]):9.0f}   {runs}",
                flush=True,
            )
        name = y.stem + "_uncal_linear_dark_prep_object.fits"
        with fits.open(work / "mirage_out" / name) as a, fits.open(work / "ours_out" / name) as b:
            for ext in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX"):
                x, z = a[ext].data.astype(np.float64), b[ext].data.astype(np.float64)
                worst = float(np.max(np.abs(x - z) / np.maximum(np.maximum(np.abs(x), np.abs(z)), 1)))
                assert worst <= 4 * np.finfo(np.float32).eps, (label, ext, worst)
        ratios[label] = (
            statistics.median(times["mirage"]) / statistics.median(times["ours"]),
            statistics.median(mems["mirage"]) / statistics.median(mems["ours"]),
        )
    print()
    for label, (speed, mem) in ratios.items():
        print(f"{label}: {speed:.1f}x faster (target >= 10), {mem:.1f}x less peak memory (target >= 4)")
    # our peak memory at two dark lengths, same exposures: from the 27-frame dark the SUB160 case
    # still reads only frames the dark has, the full-frame case is continued past frame 26
    # (which keeps frames 0 and 26 and a scratch frame per image: a constant, not a length)
    for label, (aperture, patt, ngroup) in cases.items():
        tag = label.split()[0].lower()
        short_yaml = write_yaml(
            work / f"bench_{tag}_short.yaml", short_dark, aperture, patt, ngroup, work / "mirage_out"
        )
        peaks = {
            n: statistics.median(
                run(OURS.format(y=str(yy), out=str(work / "ours_out")), work, env)[1] for _ in range(args.repeat)
            )
            for n, yy in ((108, work / f"bench_{tag}.yaml"), (27, short_yaml))
        }
        print(
            f"ours, {label}, peak MB: from the 108-frame dark {peaks[108]:.0f}, from the 27-frame dark {peaks[27]:.0f}"
        )


if __name__ == "__main__":
    main()
