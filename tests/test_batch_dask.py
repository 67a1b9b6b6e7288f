"""Batch linearization on a Dask cluster (issue 12): a LocalCluster of two worker processes on
loopback, real raw darks and reference files, the real `linearize_all` and command.

What is pinned: the same outputs, byte for byte, as one local process; a worker killed with
SIGKILL while it writes (seen by its temporary file, which names its process) costs nothing
but a second execution of that task (counted in the Dask events the tasks log); a task that
fails for a reason of its own is reported and the others finish; a rerun does only what is
left; a missing Dask names the extra to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

import jwst_reference_files as J
from mirage_data.batch.run import EVENT_TOPIC
from mirage_data.darks.batch import linearize_all
from mirage_data.io.atomic import TEMPORARY_SUFFIX, parse_temporary_name

TIMES = ("00h03m58", "01h13m10", "02h20m41", "03h31m07")


def _raw_name(detector: str, time: str) -> str:
    return f"NRCNRC{detector}-DARK-60082202011_1_481_SE_2016-01-09T{time}_level1b_uncal.fits"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Raw darks (three small NRCA1, one 24-group NRCA1, one NRCA2 whose linearity file is
    cut short) and the reference files, written once for the module."""
    root = tmp_path_factory.mktemp("batch_sources")
    cal = root / "calibration"
    J.write_reference_set(cal, "NRCA1", ncoeffs=4)
    bad = J.write_reference_set(cal, "NRCA2", ncoeffs=4)["linearity"]
    with open(bad, "r+b") as f:  # headers intact, data cut: only reading the data finds it
        f.truncate(bad.stat().st_size - 4 * 2880 * 100)
    raws = {}
    for k, time in enumerate(TIMES[:3]):
        raws[("A1", time)] = J.write_raw_dark(root / _raw_name("A1", time), "NRCA1", ngroups=3, seed=30 + k)
    raws[("A1", TIMES[3])] = J.write_raw_dark(root / _raw_name("A1", TIMES[3]), "NRCA1", ngroups=24, seed=40)
    raws[("A2", TIMES[0])] = J.write_raw_dark(root / _raw_name("A2", TIMES[0]), "NRCA2", ngroups=2, seed=50)
    return cal, raws


def _tree(tmp_path: Path, raws: dict, which=None) -> Path:
    root = tmp_path / "mirage_data"
    for (det, time), path in raws.items():
        if which is not None and (det, time) not in which:
            continue
        target = root / "nircam" / "darks" / "raw" / det / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


@pytest.fixture(scope="module")
def cluster():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _outputs(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "nircam" / "darks" / "linearized").rglob("*"))
        if p.is_file()
    }


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(TEMPORARY_SUFFIX)]


def test_cluster_gives_the_same_bytes_as_one_process(tmp_path, sources, cluster):
    cal, raws = sources
    small = [k for k in raws if k[0] == "A1"][:3]
    local = _tree(tmp_path / "local", raws, small)
    spread = _tree(tmp_path / "cluster", raws, small)
    one = linearize_all(local, calibration_dir=cal, use_crds=False, jobs=1, fsync=False)
    many = linearize_all(spread, calibration_dir=cal, use_crds=False, client=cluster, fsync=False)
    assert len(one.done) == len(many.done) == 3 and one.ok and many.ok
    assert _outputs(local) == _outputs(spread)
    # the files really ran on the cluster's two workers
    workers = {o.worker for o in many.tasks.outcomes}
    assert len(workers) == 2


def test_worker_killed_mid_task_is_retried_and_leaves_nothing(tmp_path, sources, cluster):
    cal, raws = sources
    big = ("A1", TIMES[3])
    root = _tree(tmp_path / "kill", raws, [big, ("A1", TIMES[0])])
    reference = _tree(tmp_path / "ref", raws, [big, ("A1", TIMES[0])])
    linearize_all(reference, calibration_dir=cal, use_crds=False, jobs=1, fsync=False)
    out_dir = root / "nircam" / "darks" / "linearized" / "A1"
    out_dir.mkdir(parents=True)
    killed = []
    stop = threading.Event()

    def kill_the_writer() -> None:
        # the big dark's output appears first under a temporary name carrying host and pid
        while not stop.is_set() and not killed:
            for entry in os.scandir(out_dir):
                parsed = parse_temporary_name(entry.name)
                if parsed is not None and TIMES[3] in entry.name:
                    os.kill(parsed[1], signal.SIGKILL)
                    killed.append(parsed[1])
                    break

    before = Counter(e["key"] for _, e in cluster.get_events(EVENT_TOPIC))
    watcher = threading.Thread(target=kill_the_writer, daemon=True)
    watcher.start()
    try:
        summary = linearize_all(root, calibration_dir=cal, use_crds=False, client=cluster, fsync=False)
    finally:
        stop.set()
        watcher.join()
    assert len(killed) == 1
    assert summary.ok and len(summary.done) == 2
    runs = Counter(e["key"] for _, e in cluster.get_events(EVENT_TOPIC)) - before
    big_key = f"nircam/darks/raw/A1/{_raw_name('A1', TIMES[3])}"
    assert runs[big_key] == 2  # killed once, then run again on a live worker
    assert _outputs(root) == _outputs(reference)
    assert _temporaries(root) == []
    cluster.wait_for_workers(2)


def test_failing_task_is_reported_and_the_others_finish_then_rerun_does_the_rest(tmp_path, sources, cluster):
    cal, raws = sources
    root = _tree(tmp_path, raws, [("A1", TIMES[0]), ("A1", TIMES[1]), ("A2", TIMES[0])])
    summary = linearize_all(root, calibration_dir=cal, use_crds=False, client=cluster, fsync=False)
    assert len(summary.done) == 2
    assert [r.name for r, _ in summary.failed] == [_raw_name("A2", TIMES[0])]
    table = summary.tasks.table()
    assert table[-1] == "2 done, 0 already there, 1 failed"
    assert any(line.startswith("failed") and "A2" in line for line in table)
    # a rerun skips the finished outputs and tries only the failed one
    again = linearize_all(root, calibration_dir=cal, use_crds=False, client=cluster, fsync=False)
    assert len(again.skipped) == 2 and again.done == [] and len(again.failed) == 1
    assert [o.key for o in again.tasks.outcomes] == [f"nircam/darks/raw/A2/{_raw_name('A2', TIMES[0])}"]


def test_command_on_a_local_cluster_prints_progress_summary_and_exit_status(tmp_path, sources):
    cal, raws = sources
    root = _tree(tmp_path, raws, [("A1", TIMES[0]), ("A2", TIMES[0])])
    args = [sys.executable, "-m", "mirage_data", "linearize", "--all", "--mirage-data", str(root)]
    args += ["--calibration-dir", str(cal), "--no-crds", "--workers", "2"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "local Dask cluster of 2 worker processes" in out.stdout
    assert "Dask dashboard: http://127.0.0.1:" in out.stdout
    assert "1 linearized, 0 already there, 1 failed" in out.stdout
    assert "written" in out.stdout  # bytes written and rate, across the cluster
    assert "Traceback" not in out.stderr


def test_missing_dask_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from mirage_data.batch.executors import BatchSetupError, open_executor\n"
        "try:\n"
        "    with open_executor(workers=2): pass\n"
        "except BatchSetupError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert 'pip install "mirage-data[dask]"' in out.stdout
    both = subprocess.run(
        [sys.executable, "-m", "mirage_data", "linearize", "--all", "--mirage-data", str(tmp_path)]
        + ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr


def test_prepared_darks_of_a_program_on_the_cluster(tmp_path, cluster):
    """One task per exposure: the same bytes as one process, a bad exposure reported, a rerun
    that skips what is there (and keeps its entries in the map)."""
    import json

    import dark_prep_cases as C
    from mirage_data.darks.programs import DARK_MAP_NAME, prepare_darks

    dark = C.write_linear_dark(tmp_path / "d" / "dark.fits", nframes=6)

    def program(folder: Path) -> list[Path]:
        yamls = []
        for k, (patt, ngroup) in enumerate((("RAPID", 3), ("BRIGHT2", 2), ("BRIGHT1", 3))):
            yamls.append(
                C.write_yaml(
                    folder / f"exp{k}.yaml",
                    instrument="nircam",
                    aperture="NRCB1_SUB160",
                    readpatt=patt,
                    ngroup=ngroup,
                    nint=1,
                    out_dir=folder / "out",
                    linearized=dark,
                )
            )
        bad = C.write_yaml(
            folder / "bad.yaml",
            instrument="nircam",
            aperture="NRCB1_SUB160",
            readpatt="RAPID",
            ngroup=2,
            nint=1,
            out_dir=folder / "out",
            linearized=tmp_path / "d" / "absent.fits",
        )
        return [*yamls, bad]

    local_yamls, cluster_yamls = program(tmp_path / "local"), program(tmp_path / "cluster")
    local = prepare_darks(local_yamls, tmp_path / "local", out_dir=tmp_path / "local" / "darks", seed=3)
    spread = prepare_darks(
        cluster_yamls, tmp_path / "cluster", out_dir=tmp_path / "cluster" / "darks", seed=3, client=cluster
    )
    assert len(local.prepared) == len(spread.prepared) == 3
    assert [p.name for p, _ in spread.failed] == ["bad.yaml"]
    assert spread.tasks.table()[-1] == "3 done, 0 already there, 1 failed"

    from astropy.io import fits

    def darks(folder):
        return sorted((folder / "darks").iterdir())

    ours, theirs = darks(tmp_path / "local"), darks(tmp_path / "cluster")
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 3
    for a, b in zip(ours, theirs, strict=True):
        assert a.stat().st_size == b.stat().st_size
        with fits.open(a) as ha, fits.open(b) as hb:
            for x, y in zip(ha, hb, strict=True):
                # the headers name each run's own yaml; everything else is the same, bit for bit
                ka = [(c.keyword, c.value) for c in x.header.cards if c.keyword != "YAMLFILE"]
                kb = [(c.keyword, c.value) for c in y.header.cards if c.keyword != "YAMLFILE"]
                assert ka == kb
                if x.data is not None:
                    assert x.data.tobytes() == y.data.tobytes()
    again = prepare_darks(
        cluster_yamls, tmp_path / "cluster", out_dir=tmp_path / "cluster" / "darks", seed=3, client=cluster
    )
    assert sorted(again.skipped) == sorted(cluster_yamls[:3]) and again.prepared == []
    entries = json.loads((tmp_path / "cluster" / DARK_MAP_NAME).read_text())
    assert sorted(entries) == sorted(str(y) for y in cluster_yamls[:3])
