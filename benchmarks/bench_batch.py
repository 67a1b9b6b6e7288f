"""Batch linearization on Dask: one worker against two (issue 12).

    python benchmarks/bench_batch.py [--darks 8] [--groups 20] [--repeat 3] [--workdir DIR]

Makes DARKS full-frame NRCA1 raw darks of GROUPS groups (RAPID, uint16; about 168 MB each at 20
groups) and their four reference files, then runs ``linearize_all`` on a Dask ``LocalCluster``
of one worker process with one thread, and of two worker processes with one thread each, on
this machine (2 cores). Timed: the batch only (``linearize_all`` with the cluster already up:
reading, linearizing, writing every dark with fsync, recording them), median of REPEAT runs;
the cluster's start-up is printed apart. Per-task memory: the peak resident memory of each
worker process after the runs (a worker runs one task at a time, so this is the task's
memory plus the worker's own, also printed as measured before the first task).

Prints the scaling (time on one worker / time on two) and the memory per worker.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test file writers

from distributed import Client, LocalCluster  # noqa: E402

import jwst_reference_files as J  # noqa: E402
from mirage_data.darks.batch import linearize_all  # noqa: E402


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_inputs(folder: Path, darks: int, groups: int) -> tuple[Path, Path]:
    cal = folder / "calibration"
    J.write_reference_set(cal, "NRCA1", ncoeffs=5)
    raw_dir = folder / "mirage_data" / "nircam" / "darks" / "raw" / "A1"
    raw_dir.mkdir(parents=True)
    for k in range(darks):
        name = f"NRCNRCA1-DARK-60082202011_1_481_SE_2016-01-09T{k:02d}h00m00_level1b_uncal.fits"
        J.write_raw_dark(raw_dir / name, "NRCA1", ngroups=groups, seed=100 + k)
    return folder / "mirage_data", cal


def run(root: Path, cal: Path, n_workers: int, repeat: int) -> dict:
    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - t0
        base = client.run(_peak_rss_mb)
        times = []
        for _ in range(repeat):
            shutil.rmtree(root / "nircam" / "darks" / "linearized", ignore_errors=True)
            t = time.perf_counter()
            summary = linearize_all(root, calibration_dir=cal, use_crds=False, client=client, record=False)
            times.append(time.perf_counter() - t)
            assert summary.ok and len(summary.done) == len(list((root / "nircam/darks/raw/A1").iterdir()))
        peaks = client.run(_peak_rss_mb)
    return {"startup": startup, "times": times, "base": base, "peaks": peaks}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--darks", type=int, default=8)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_batch_", dir=args.workdir))
    try:
        print(f"making {args.darks} full-frame NRCA1 raw darks of {args.groups} groups in {work} ...", flush=True)
        root, cal = make_inputs(work, args.darks, args.groups)
        results = {}
        for n in (1, 2):
            results[n] = r = run(root, cal, n, args.repeat)
            med = statistics.median(r["times"])
            print(
                f"{n} worker(s) x 1 thread: batch {med:.2f} s (median of {args.repeat}: "
                f"{', '.join(f'{t:.2f}' for t in r['times'])}), cluster start-up {r['startup']:.1f} s; "
                f"per-worker peak RSS {', '.join(f'{v:.0f} MB' for v in r['peaks'].values())} "
                f"(idle worker: {', '.join(f'{v:.0f} MB' for v in r['base'].values())})",
                flush=True,
            )
        t1, t2 = (statistics.median(results[n]["times"]) for n in (1, 2))
        print(f"scaling: 1 worker / 2 workers = {t1 / t2:.2f}x (ideal on 2 cores: 2.0x)")
        per_task = max(max(r["peaks"].values()) - max(r["base"].values()) for r in results.values())
        print(f"memory per dark task (peak worker RSS above an idle worker): about {per_task:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
