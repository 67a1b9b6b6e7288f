#!/usr/bin/env python
"""Benchmark: mirage-data's transfer engine against Mirage's old sequential downloader.

Run from the repository root with the project's virtualenv::

    python benchmarks/bench_transfer.py                 # default scale (~1.2 GB served), 3 repeats
    python benchmarks/bench_transfer.py --scale 0.1 --repeats 1     # a quick smoke run
    python benchmarks/bench_transfer.py --keep          # keep the temporary folder afterwards

The spec it implements
----------------------
A loopback server (the tests' ``support.faulty_server``, built on the package's static server
``mirage_data.testing.server``, in a process of its own) caps each connection at
25 MB/s with 30 ms of first-byte latency, and serves a scaled-down selection of the collection:
23 files at real catalog paths, of mixed sizes, >= 1 GB in all at the default scale, darks as
``.fits.gz`` whose content compresses like real darks (raw: uint16 ramps of a bias level plus a
few DN of read noise, gzip ratio ~0.4; linearized: float32 quantised to 1/8 DN, ratio ~0.63),
and a few small ``.tar.gz`` archives of FITS members. Its catalog (exact sizes and sha256) is
written with ``Catalog.write`` so that mirage-data verifies what it fetches. The collection is
generated once and cached (see ``--cache-dir``).

Two sides fetch all of it, each in a subprocess of its own, alternating per repetition, into a
fresh destination each time:

* ``baseline``: written the way Mirage's old downloader works -- one file after the other,
  ``requests.get(stream=True)``, ``iter_content(chunk_size=2048)`` written to the file's final
  name, then the stdlib ``gzip.open`` + ``shutil.copyfileobj`` into the ``.fits`` beside it (or
  ``tarfile.open().extractall``). Like the old tool it leaves the ``.gz``/``.tar.gz`` behind
  (they count in its peak disk); they are deleted after it has been measured.
* ``ours``: ``mirage_data.download_reffiles`` with its defaults (``jobs=4, connections=4``),
  plus an extra row ``ours-j8c8`` (``jobs=8, connections=8``) unless ``--no-extra``.

Reported per side (medians over the repeats): wall time of the download call (timed inside the
child), CPU time of the whole child process (user+sys, ``RUSAGE_CHILDREN``), CPU time of the
server process meanwhile, peak disk use of the destination (allocated bytes of everything below
it, temporary files included, polled every 50 ms from the parent), the installed size (allocated
bytes of the decompressed layout files) and the bytes the server sent (``/_loopback/stats``,
which must equal the collection's size: everything fetched exactly once). Targets: baseline wall
/ ours wall >= 5, ours peak / installed <= 1.1.

Both sides must produce the same installed tree (relative paths and sizes of the files below
``mirage_data``, the state folder ``.mirage-data`` aside), equal to what the generator expects;
on the first repetition every installed file is also hashed and compared. Any difference stops
the benchmark with an error.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The rate-capped loopback server with statistics is test machinery: it lives in tests/support
# (not in the package), so the benchmark puts tests/ on its import path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

try:
    import mirage_data  # noqa: F401
except ImportError:  # not installed: use the source tree beside this file
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent / "src"))

RATE_LIMIT = 25e6  # bytes per second, per connection
FIRST_BYTE_LATENCY = 0.03  # seconds before each response's headers
POLL_INTERVAL = 0.05  # seconds between disk-use samples
GEN_VERSION = 1  # bump when the generated content changes (invalidates caches)
NX = NY = 2048
ISAL_LEVEL = 3  # isal's best level; about the ratio of gzip -6 on these data, and fast
TARGET_SPEEDUP = 5.0
TARGET_PEAK_RATIO = 1.1
STATE_DIR = ".mirage-data"

# --------------------------------------------------------------------------------------------
# The scaled-down selection: (instrument, dark kind, detector, which one of that detector's
# darks, groups of 2048x2048 at scale 1). A raw group is 8 MB (uint16, ~3.3 MB gzipped), a
# linearized group 16 MB (float32, ~10 MB gzipped).
# --------------------------------------------------------------------------------------------
DARKS = [
    # a few large ones (~160-180 MB gzipped)
    ("nircam", "linearized", "A1", 0, 17),
    ("nircam", "linearized", "B1", 0, 16),
    ("nircam", "raw", "A1", 0, 52),
    ("nircam", "raw", "B5", 0, 48),
    # many of 20-60 MB
    ("nircam", "raw", "A2", 0, 16),
    ("nircam", "raw", "A3", 0, 12),
    ("nircam", "raw", "A4", 0, 9),
    ("nircam", "raw", "A5", 0, 7),
    ("nircam", "raw", "B2", 0, 14),
    ("nircam", "raw", "B3", 0, 10),
    ("nircam", "raw", "B4", 0, 6),
    ("nircam", "linearized", "A2", 0, 5),
    ("nircam", "linearized", "A3", 0, 3),
    ("niriss", "raw", "NIS", 0, 10),
    ("niriss", "raw", "NIS", 1, 8),
    ("niriss", "linearized", "NIS", 0, 4),
    ("fgs", "raw", "GUIDER1", 0, 7),
    ("fgs", "raw", "GUIDER2", 0, 6),
    ("fgs", "linearized", "GUIDER1", 0, 3),
]

# Small archives: relative path -> members (file name, float32 image side, planes at scale 1).
# Members are named mirage_data/<the group's folder>/<name>, as the collection's tarballs are.
ARCHIVES = {
    "fgs/cosmic_ray_library/mirage_fgs_cr_library.tar.gz": [(f"CRs_MCD1.7_SUNMAX_0{i}.fits", 256, 4) for i in range(4)],
    "niriss/cosmic_ray_library/mirage_niriss_cr_library.tar.gz": [
        (f"CRs_MCD1.7_SUNMIN_0{i}.fits", 256, 4) for i in range(3)
    ],
    "niriss/ghosts/niriss_ghost_stamps.tar.gz": [
        (f"niriss_ghost_gap_{f}.fits", 256, 2) for f in ("F090W", "F150W", "F200W")
    ],
    "nircam/reference_files/nircam_distortion_files.tar.gz": [
        (f"NRC{d}_distortion.fits", 64, 1) for d in ("A1", "A2", "B1")
    ],
}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def gb(n: float) -> float:
    return n / 1e9


def allocated_bytes(root: Path) -> int:
    """Allocated bytes (st_blocks * 512) of every file below *root*; tolerant of files
    appearing and vanishing while it walks."""
    total = 0
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    else:
                        total += e.stat(follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


def layout_files(mirage_data: Path) -> dict[str, Path]:
    """The files of the installed layout (relative path -> path), the state folder aside."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(mirage_data):
        if Path(dirpath) == mirage_data and STATE_DIR in dirnames:
            dirnames.remove(STATE_DIR)
        for name in filenames:
            p = Path(dirpath) / name
            out[p.relative_to(mirage_data).as_posix()] = p
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(4 << 20)
            if not data:
                return h.hexdigest()
            h.update(data)


def scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


# --------------------------------------------------------------------------------------------
# Generating the collection (once; cached)
# --------------------------------------------------------------------------------------------


def _dark_headers(instrument: str, detector: str, kind: str, ngroups: int) -> tuple[bytes, bytes]:
    from astropy.io import fits

    from mirage_data.collection.catalog import crds_detector_name

    primary = fits.PrimaryHDU().header  # SIMPLE, BITPIX, NAXIS 0, EXTEND
    primary["TELESCOP"] = "JWST"
    primary["INSTRUME"] = instrument.upper()
    primary["DETECTOR"] = crds_detector_name(instrument, detector)
    primary["EXP_TYPE"] = {"nircam": "NRC_DARK", "niriss": "NIS_DARK", "fgs": "FGS_DARK"}[instrument]
    primary["READPATT"] = "RAPID"
    primary["NINTS"] = 1
    primary["NGROUPS"] = ngroups
    primary["NFRAMES"] = 1
    primary["ORIGIN"] = "mirage-data bench"
    primary["COMMENT"] = "Synthetic dark made by benchmarks/bench_transfer.py (noise only)."

    sci = fits.Header()
    sci["XTENSION"] = "IMAGE"
    sci["BITPIX"] = 16 if kind == "raw" else -32
    sci["NAXIS"] = 4
    sci["NAXIS1"] = NX
    sci["NAXIS2"] = NY
    sci["NAXIS3"] = ngroups
    sci["NAXIS4"] = 1
    sci["PCOUNT"] = 0
    sci["GCOUNT"] = 1
    if kind == "raw":
        sci["BZERO"] = 32768  # unsigned 16-bit, the FITS way
        sci["BSCALE"] = 1
    sci["EXTNAME"] = "SCI"
    sci["BUNIT"] = "DN"
    return primary.tostring().encode("ascii"), sci.tostring().encode("ascii")


def _dark_groups(kind: str, ngroups: int, seed: int):
    """Yield the big-endian bytes of each 2048x2048 group of a synthetic dark ramp."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "raw":
        # A bias level per amplifier (4 x 512 columns), a slow dark ramp, 6 DN of read noise.
        base = np.empty((NY, NX), np.float32)
        for amp, offset in enumerate(rng.normal(0, 40, 4)):
            base[:, amp * 512 : (amp + 1) * 512] = 12000 + offset
        for g in range(ngroups):
            z = rng.standard_normal((NY, NX), dtype=np.float32)
            z *= 6.0
            z += base
            z += 0.3 * g
            v = np.rint(z).astype(np.uint16)
            v ^= np.uint16(0x8000)  # stored as int16 with BZERO = 32768
            yield v.astype(">u2").tobytes()
    else:
        # Linearized: per-pixel signal level, a ramp, noise; quantised to 1/8 DN.
        base = rng.uniform(0, 2000, (NY, NX)).astype(np.float32)
        for g in range(ngroups):
            z = rng.standard_normal((NY, NX), dtype=np.float32)
            z *= 6.0
            z += base
            z += 0.5 * g
            z *= 8.0
            np.rint(z, out=z)
            z /= 8.0
            yield z.astype(">f4").tobytes()


class _GzipSink:
    """Compress with isal into a file, hashing both sides."""

    def __init__(self, path: Path) -> None:
        from isal import isal_zlib

        self.f = open(path, "wb")
        self.c = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, 31)
        self.h_gz = hashlib.sha256()
        self.h_raw = hashlib.sha256()
        self.n_gz = self.n_raw = 0

    def write(self, data: bytes) -> None:
        self.h_raw.update(data)
        self.n_raw += len(data)
        self._out(self.c.compress(data))

    def _out(self, data: bytes) -> None:
        if data:
            self.f.write(data)
            self.h_gz.update(data)
            self.n_gz += len(data)

    def close(self) -> None:
        self._out(self.c.flush())
        self.f.close()


def _make_dark(task: dict) -> dict:
    rel, kind, ngroups = task["rel"], task["kind"], task["ngroups"]
    path = Path(task["root"]) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sink = _GzipSink(tmp)
    primary, sci = _dark_headers(task["instrument"], task["detector"], kind, ngroups)
    sink.write(primary)
    sink.write(sci)
    n_data = 0
    for group in _dark_groups(kind, ngroups, task["seed"]):
        sink.write(group)
        n_data += len(group)
    pad = -n_data % 2880
    if pad:
        sink.write(b"\0" * pad)
    sink.close()
    os.replace(tmp, path)
    return {
        "rel": rel,
        "size": sink.n_gz,
        "sha256": sink.h_gz.hexdigest(),
        "installed": {rel[: -len(".gz")]: [sink.n_raw, sink.h_raw.hexdigest()]},
    }


def _make_archive(task: dict) -> dict:
    import numpy as np
    from astropy.io import fits

    from mirage_data.collection.catalog import ARCHIVE_FOLDERS, load_catalog

    rel = task["rel"]
    entry = load_catalog().get(rel)
    folder = ARCHIVE_FOLDERS[entry.group].format(instrument=entry.instrument)
    rng = np.random.default_rng(task["seed"])
    tar_bytes = io.BytesIO()
    installed = {}
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, side, planes in task["members"]:
            data = (rng.standard_normal((planes, side, side), dtype=np.float32) * 20).astype(np.float32)
            buf = io.BytesIO()
            fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI")]).writeto(buf)
            content = buf.getvalue()
            info = tarfile.TarInfo(f"mirage_data/{folder}/{name}")
            info.size, info.mode, info.mtime = len(content), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(content))
            installed[f"{folder}/{name}"] = [len(content), hashlib.sha256(content).hexdigest()]
    path = Path(task["root"]) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sink = _GzipSink(tmp)
    sink.write(tar_bytes.getvalue())
    sink.close()
    os.replace(tmp, path)
    return {"rel": rel, "size": sink.n_gz, "sha256": sink.h_gz.hexdigest(), "installed": installed}


def _generate_task(task: dict) -> dict:
    return _make_archive(task) if task["type"] == "archive" else _make_dark(task)


def collection_tasks(scale: float, root: Path) -> list[dict]:
    from mirage_data.collection.catalog import load_catalog

    real = load_catalog()
    tasks = []
    for i, (instrument, kind, detector, index, groups) in enumerate(DARKS):
        matches = [e for e in real if e.instrument == instrument and e.dark_kind == kind and e.detector == detector]
        entry = matches[index]
        tasks.append(
            {
                "type": "dark",
                "rel": entry.relative_path,
                "instrument": instrument,
                "detector": detector,
                "kind": kind,
                "ngroups": scaled(groups, scale),
                "seed": 1000 + i,
                "root": os.fspath(root),
            }
        )
    for i, (rel, members) in enumerate(ARCHIVES.items()):
        assert rel in real, rel
        tasks.append(
            {
                "type": "archive",
                "rel": rel,
                "members": [(name, side, scaled(planes, scale)) for name, side, planes in members],
                "seed": 2000 + i,
                "root": os.fspath(root),
            }
        )
    return tasks


def ensure_collection(cache: Path, scale: float, say) -> dict:
    """Generate the collection below *cache* unless a complete one is already there."""
    manifest_path = cache / "manifest.json"
    root = cache / "collection"
    tasks = collection_tasks(scale, root)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        files = manifest.get("files", {})
        if (
            manifest.get("gen_version") == GEN_VERSION
            and manifest.get("scale") == scale
            and set(files) == {t["rel"] for t in tasks}
            and all((root / rel).is_file() and (root / rel).stat().st_size == f["size"] for rel, f in files.items())
        ):
            say(f"using the cached collection in {cache}")
            return manifest
    say(f"generating the collection in {cache} (once; cached for later runs)...")
    t0 = time.perf_counter()
    shutil.rmtree(cache, ignore_errors=True)
    root.mkdir(parents=True)
    # Largest first over 2 processes.
    tasks.sort(key=lambda t: -(t.get("ngroups", 0) * (2 if t.get("kind") == "linearized" else 1)))
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_generate_task, tasks))
    files = {r["rel"]: r for r in results}

    from mirage_data.collection.catalog import load_catalog

    catalog = load_catalog().subset(files).with_checksums({rel: (r["size"], r["sha256"]) for rel, r in files.items()})
    catalog_path = cache / "catalog.tsv"
    catalog.write(catalog_path)
    manifest = {"gen_version": GEN_VERSION, "scale": scale, "files": files}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    say(
        f"generated {len(files)} files, {gb(sum(r['size'] for r in results)):.2f} GB, "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return manifest


def check_fits_sample(manifest: dict, mirage_data: Path) -> None:
    """Open one installed raw dark and one linearized dark with astropy: a real FITS ramp."""
    from astropy.io import fits

    for kind in ("raw", "linearized"):
        rel = next(r for r in manifest["files"] if f"/darks/{kind}/" in r)
        path = mirage_data / rel[: -len(".gz")]
        # Unscaled, so the memory map works: a raw ramp is int16 with BZERO = 32768 (uint16).
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
            sci = hdul["SCI"]
            shape = sci.shape
            sample = sci.section[0, 0, :64, :64]
            bzero = sci.header.get("BZERO", 0)
            ok_dtype = (sample.dtype.kind, bzero) == (("i", 32768) if kind == "raw" else ("f", 0))
            level = float(sample.mean()) + bzero
        if len(shape) != 4 or shape[2:] != (NY, NX) or not ok_dtype:
            raise SystemExit(f"FAILED: {path} is not a 4-D {NX}x{NY} {kind} ramp: {shape} {sample.dtype}")
        if kind == "raw" and not 11500 < level < 12500:
            raise SystemExit(f"FAILED: {path}: raw level {level} is not the generated bias level")


# --------------------------------------------------------------------------------------------
# The two sides, each run in a child process (python bench_transfer.py --child SIDE ...)
# --------------------------------------------------------------------------------------------


def child_baseline(url: str, download_path: Path, catalog_path: Path) -> dict:
    """Mirage's old downloader, as written: sequential, requests with 2 KB chunks, stdlib gunzip."""
    import gzip

    import requests

    from mirage_data.collection.catalog import load_catalog

    catalog = load_catalog(catalog_path)
    mirage_data = download_path / "mirage_data"
    fetched = 0
    for entry in catalog:
        target = mirage_data / entry.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        with requests.get(entry.url(url), stream=True) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code} for {entry.url(url)}")
            with open(target, "wb") as f:
                for chunk in response.iter_content(chunk_size=2048):
                    if chunk:
                        f.write(chunk)
                        fetched += len(chunk)
        if entry.is_archive:
            with tarfile.open(target) as tar:
                tar.extractall(download_path)
        else:
            unzipped = target.with_name(target.name[: -len(".gz")])
            with gzip.open(target, "rb") as file_in, open(unzipped, "wb") as file_out:
                shutil.copyfileobj(file_in, file_out)
    return {"files": len(catalog), "bytes_fetched": fetched}


def child_ours(url: str, download_path: Path, catalog_path: Path, jobs: int, connections: int) -> dict:
    from mirage_data.collection.catalog import load_catalog
    from mirage_data.download.api import download_reffiles

    catalog = load_catalog(catalog_path)
    result = download_reffiles(
        download_path,
        instrument="all",
        dark_type="both",
        mirror=url,
        catalog=catalog,
        quiet=True,
        jobs=jobs,
        connections=connections,
    )
    if len(result.plan.files) != len(catalog) or result.report is None or result.report.failed:
        raise RuntimeError(f"ours did not fetch the whole selection: {result.summary()}")
    return {"files": len(result.report.results), "bytes_fetched": result.report.bytes_fetched}


def child_main(args: argparse.Namespace) -> int:
    download_path = Path(args.dest)
    catalog_path = Path(args.catalog)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if args.child == "baseline":
        out = child_baseline(args.url, download_path, catalog_path)
    else:
        out = child_ours(args.url, download_path, catalog_path, args.jobs, args.connections)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(
        wall=wall,
        cpu_call=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        max_rss_mb=r1.ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The parent: serve, run the sides, measure
# --------------------------------------------------------------------------------------------


class DiskPoller:
    """Samples the allocated bytes below a folder every POLL_INTERVAL seconds, on a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak = 0
        self.peak_at = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while True:
            value = allocated_bytes(self.root)
            self.samples += 1
            if value > self.peak:
                self.peak, self.peak_at = value, time.perf_counter() - self._t0
            if self._stop.wait(POLL_INTERVAL):
                return

    def __enter__(self) -> DiskPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        value = allocated_bytes(self.root)  # one last sample, after the child has exited
        self.peak = max(self.peak, value)


def server_stats(url: str) -> dict:
    import requests

    r = requests.get(url + "_loopback/stats", timeout=10)
    r.raise_for_status()
    return r.json()


def find_server_process(root: Path):
    try:
        import psutil
    except ImportError:
        return None
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "support.faulty_server" in cmd and os.fspath(root) in cmd:
            return child
    return None


def system_busy_cpu() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores, all processes, the kernel)."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    idle = t.idle + sum(getattr(t, name, 0.0) for name in ("iowait", "steal", "guest", "guest_nice"))
    return sum(t) - idle


def process_cpu(proc) -> float | None:
    if proc is None:
        return None
    t = proc.cpu_times()
    return t.user + t.system


def run_side(
    side: str,
    jobs: int,
    connections: int,
    url: str,
    dest: Path,
    catalog_path: Path,
    server_proc,
) -> dict:
    dest.mkdir(parents=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "baseline" if side == "baseline" else "ours"]
    cmd += ["--url", url, "--dest", os.fspath(dest), "--catalog", os.fspath(catalog_path)]
    cmd += ["--jobs", str(jobs), "--connections", str(connections)]
    served0 = server_stats(url)["bytes_served"]
    server_cpu0 = process_cpu(server_proc)
    busy0 = system_busy_cpu()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with DiskPoller(dest) as poller:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    proc_wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    busy1 = system_busy_cpu()
    server_cpu1 = process_cpu(server_proc)
    served1 = server_stats(url)["bytes_served"]
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: side {side} exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"FAILED: side {side} printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    child = json.loads(lines[-1][len("RESULT ") :])

    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server_cpu = None if server_cpu0 is None else server_cpu1 - server_cpu0
    # CPU the machine spent on anything but the side, the server and this parent (its disk
    # poller): other programs, and kernel threads such as the writeback of our files.
    other_cpu = None
    if busy0 is not None and server_cpu is not None:
        parent_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
        other_cpu = max(0.0, (busy1 - busy0) - cpu - server_cpu - parent_cpu)

    mirage_data = dest / "mirage_data"
    final_on_disk = allocated_bytes(dest)
    leftovers = 0
    if side == "baseline":
        # The old tool leaves the archives behind; now that it has been measured, remove them.
        for rel, p in layout_files(mirage_data).items():
            if rel.endswith(".gz"):
                leftovers += p.stat().st_blocks * 512
                p.unlink()
    files = layout_files(mirage_data)
    installed_alloc = sum(p.stat().st_blocks * 512 for p in files.values())
    installed_bytes = sum(p.stat().st_size for p in files.values())
    return {
        "side": side,
        "jobs": jobs,
        "connections": connections,
        "wall": child["wall"],
        "proc_wall": proc_wall,
        "cpu": cpu,
        "cpu_user": ru1.ru_utime - ru0.ru_utime,
        "cpu_sys": ru1.ru_stime - ru0.ru_stime,
        "other_cpu": other_cpu,
        "cpu_call": child["cpu_call"],
        "server_cpu": server_cpu,
        "max_rss_mb": child["max_rss_mb"],
        "peak": poller.peak,
        "peak_at": poller.peak_at,
        "samples": poller.samples,
        "final_on_disk": final_on_disk,
        "leftovers": leftovers,
        "installed": installed_alloc,
        "installed_bytes": installed_bytes,
        "served": served1 - served0,
        "tree": {rel: p.stat().st_size for rel, p in files.items()},
    }


def verify_tree(side: str, run: dict, expected: dict[str, list], mirage_data: Path, hash_content: bool) -> None:
    tree = run["tree"]
    if set(tree) != set(expected):
        missing = sorted(set(expected) - set(tree))[:5]
        extra = sorted(set(tree) - set(expected))[:5]
        raise SystemExit(f"FAILED: {side} installed a different tree: missing {missing}, unexpected {extra}")
    wrong = [rel for rel, (size, _) in expected.items() if tree[rel] != size]
    if wrong:
        raise SystemExit(f"FAILED: {side}: wrong sizes for {wrong[:5]}")
    if hash_content:
        bad = [rel for rel, (_, digest) in expected.items() if sha256_file(mirage_data / rel) != digest]
        if bad:
            raise SystemExit(f"FAILED: {side}: wrong content (sha256) for {bad[:5]}")


def machine_facts(workdir: Path) -> list[str]:
    import isal
    import numpy
    import requests
    import urllib3

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"cores: {os.cpu_count()} ({usable} usable){' - ' + model if model else ''}; memory {mem:.0f} GiB",
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        f"isal {isal.__version__}, numpy {numpy.__version__}, requests {requests.__version__}, "
        f"urllib3 {urllib3.__version__}",
        f"work folder: {workdir} ({shutil.disk_usage(workdir).free / 1e9:.0f} GB free)",
        "load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def network_floor(sizes: list[int], jobs: int, connections: int, sequential: bool = False) -> float:
    """Seconds the transfers alone would take at RATE_LIMIT per connection, with the latency.

    A model, not a measurement: for ``sequential`` one GET per file; otherwise mirage-data's
    schedule (largest first, ``jobs`` files at once, a HEAD then ranged GETs, a file split into
    at most ``connections`` ranges by ``transfer.split_ranges`` with the default segment size),
    with installing taking no time.
    """
    import heapq

    from mirage_data.download.partial import split_ranges
    from mirage_data.download.transfer import TransferOptions

    if sequential:
        return sum(FIRST_BYTE_LATENCY + s / RATE_LIMIT for s in sizes)
    segment = TransferOptions().segment_size
    free = [0.0] * jobs
    for size in sorted(sizes, reverse=True):
        start = heapq.heappop(free)
        longest = max(b - a for a, b in split_ranges([[0, size]], connections, segment))
        heapq.heappush(free, start + 2 * FIRST_BYTE_LATENCY + longest / RATE_LIMIT)
    return max(free)


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def parent_main(args: argparse.Namespace) -> int:
    from support.faulty_server import serve_in_subprocess

    def say(text: str) -> None:
        print(text, flush=True)

    cache = Path(args.cache_dir or tempfile.gettempdir()) / f"mirage-data-bench-v{GEN_VERSION}-scale{args.scale:g}"
    manifest = ensure_collection(cache, args.scale, say)
    root = cache / "collection"
    catalog_path = cache / "catalog.tsv"
    files = manifest["files"]
    total_served = sum(f["size"] for f in files.values())
    expected = {rel: v for f in files.values() for rel, v in f["installed"].items()}
    n_darks = sum("/darks/" in rel for rel in files)
    sizes = sorted((f["size"] for f in files.values()), reverse=True)
    say(
        f"collection: {len(files)} files ({n_darks} darks .fits.gz, {len(files) - n_darks} .tar.gz), "
        f"{gb(total_served):.3f} GB served, {gb(sum(v[0] for v in expected.values())):.3f} GB installed; "
        f"largest {sizes[0] / 1e6:.0f} MB, median {statistics.median(sizes) / 1e6:.0f} MB, "
        f"smallest {sizes[-1] / 1e6:.1f} MB"
    )
    # Warm the page cache with the served files, so that the first side does not pay for it.
    for rel in files:
        with open(root / rel, "rb") as f:
            while f.read(8 << 20):
                pass

    workdir = Path(tempfile.mkdtemp(prefix="mirage-data-bench-", dir=args.workdir))
    for line in machine_facts(workdir):
        say(line)
    sides = [("baseline", 1, 1), ("ours", 4, 4)]
    if not args.no_extra:
        sides.append(("ours-j8c8", 8, 8))
    if args.sides:
        wanted = [w.strip() for w in args.sides.split(",") if w.strip()]
        unknown = set(wanted) - {name for name, _, _ in sides} - {"ours-j8c8"}
        if unknown or not wanted:
            raise SystemExit(f"--sides takes some of baseline,ours,ours-j8c8; got {args.sides!r}")
        sides = [s for s in [("baseline", 1, 1), ("ours", 4, 4), ("ours-j8c8", 8, 8)] if s[0] in wanted]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    say(
        f"server: {RATE_LIMIT / 1e6:.0f} MB/s per connection, {FIRST_BYTE_LATENCY * 1e3:.0f} ms first-byte latency; "
        f"{args.repeats} repetition(s), sides alternating"
    )
    try:
        with serve_in_subprocess(root, rate_limit=RATE_LIMIT, first_byte_latency=FIRST_BYTE_LATENCY) as url:
            server_proc = find_server_process(root)
            for rep in range(args.repeats):
                order = list(sides)
                if rep % 2 == 1 and len(order) >= 2:  # alternate which side goes first
                    order[0], order[1] = order[1], order[0]
                for name, jobs, connections in order:
                    dest = workdir / f"{name}-{rep}"
                    run = run_side(name, jobs, connections, url, dest, catalog_path, server_proc)
                    verify_tree(name, run, expected, dest / "mirage_data", hash_content=rep == 0 and not args.no_hash)
                    if name.startswith("ours") and rep == 0:
                        check_fits_sample(manifest, dest / "mirage_data")
                    if run["served"] != total_served:
                        msg = f"{name} made the server send {run['served']} bytes for a {total_served}-byte collection"
                        if run["served"] < total_served:
                            raise SystemExit("FAILED: " + msg)
                        say("WARNING: " + msg + " (some bytes were fetched twice)")
                    runs[name].append(run)
                    say(
                        f"  rep {rep + 1} {name:<10} wall {run['wall']:6.1f} s  cpu {run['cpu']:5.1f} s  "
                        f"server cpu {fmt(run['server_cpu'], '5.1f')} s  peak {gb(run['peak']):.2f} GB "
                        f"(at {run['peak_at']:.1f} s)  installed {gb(run['installed']):.2f} GB  "
                        f"rss {run['max_rss_mb']:.0f} MB  other cpu {fmt(run['other_cpu'], '.1f')} s"
                    )
                    if not (args.keep and rep == args.repeats - 1):
                        shutil.rmtree(dest)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    # ---------------------------------------------------------------- report
    def med(name: str, key: str) -> float | None:
        values = [r[key] for r in runs[name] if r[key] is not None]
        return statistics.median(values) if values else None

    say("")
    say(f"Medians over {args.repeats} repetition(s); {len(files)} files, {gb(total_served):.3f} GB served per side")
    header = (
        f"{'side':<11} {'wall s':>7} {'CPU s':>6} {'srv CPU s':>9} {'peak GB':>8} {'installed GB':>12} "
        f"{'peak/inst':>9} {'extra GB':>8} {'bytes served':>13} {'net floor s':>11} {'other CPU s':>11}"
    )
    say(header)
    say("-" * len(header))
    served_sizes = [f["size"] for f in files.values()]
    for name, jobs, connections in sides:
        floor = network_floor(served_sizes, jobs, connections, sequential=name == "baseline")
        peak, inst = med(name, "peak"), med(name, "installed")
        ratio = statistics.median(r["peak"] / r["installed"] for r in runs[name])
        served = statistics.median(r["served"] for r in runs[name])
        say(
            f"{name:<11} {med(name, 'wall'):7.1f} {med(name, 'cpu'):6.1f} {fmt(med(name, 'server_cpu'), '9.1f')} "
            f"{gb(peak):8.2f} {gb(inst):12.2f} {ratio:9.2f} {gb(peak - inst):8.2f} {served:13,.0f} "
            f"{floor:11.1f} {fmt(med(name, 'other_cpu'), '11.1f')}"
        )
    say(
        "(wall: the download call, timed in the child; CPU: the child process, user+sys; srv CPU: the server "
        "process meanwhile; net floor: transfer time alone at 25 MB/s per connection under that side's "
        "schedule, a model; other CPU: CPU time the machine spent on anything else meanwhile)"
    )
    busy = [
        r["other_cpu"] / (r["wall"] * (os.cpu_count() or 1))
        for rs in runs.values()
        for r in rs
        if r["other_cpu"] is not None
    ]
    if busy and max(busy) > 0.15:
        say(
            f"NOTE: other work took up to {max(busy):.0%} of the machine's CPU during a run "
            "(other programs, or kernel writeback of the files written); wall times are noisier for it"
        )
    say("")
    verdicts = []
    if "baseline" in runs and "ours" in runs:
        speedup = med("baseline", "wall") / med("ours", "wall")
        met = speedup >= TARGET_SPEEDUP
        verdicts.append(met)
        say(f"baseline wall / ours wall: {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x): {'MET' if met else 'NOT MET'}")
        if "ours-j8c8" in runs:
            say(f"baseline wall / ours-j8c8 wall: {med('baseline', 'wall') / med('ours-j8c8', 'wall'):.1f}x")
    if "ours" in runs:
        ratios = [r["peak"] / r["installed"] for r in runs["ours"]]
        met = max(ratios) <= TARGET_PEAK_RATIO
        verdicts.append(met)
        say(
            f"ours peak disk / installed: median {statistics.median(ratios):.3f}, worst {max(ratios):.3f} "
            f"(target <= {TARGET_PEAK_RATIO}): {'MET' if met else 'NOT MET'}"
        )
    if "baseline" in runs:
        ratios = [r["peak"] / r["installed"] for r in runs["baseline"]]
        say(
            f"baseline peak disk / installed: median {statistics.median(ratios):.3f} (it keeps every .gz until the end)"
        )
    say(
        "installed trees: identical on every side and repetition (paths and sizes; sha256 on the first repetition)"
        if not args.no_hash
        else "installed trees: identical on every side and repetition (paths and sizes)"
    )
    if args.keep:
        say(f"kept: {workdir} (last repetition's destinations) and the collection in {cache}")
    if args.json:
        for rs in runs.values():
            for r in rs:
                r.pop("tree", None)
        Path(args.json).write_text(json.dumps({"collection_bytes": total_served, "runs": runs}, indent=1))
    return 1 if args.strict and not all(verdicts) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="grow or shrink the collection (default 1: ~1.2 GB served)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per side (default 3)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (last repetition's destinations)"
    )
    parser.add_argument("--no-extra", action="store_true", help="skip the extra jobs=8/connections=8 row")
    parser.add_argument("--sides", help="comma-separated subset of: baseline,ours,ours-j8c8")
    parser.add_argument("--no-hash", action="store_true", help="check installed sizes only, not sha256")
    parser.add_argument("--cache-dir", help="where the generated collection is cached (default: the temp folder)")
    parser.add_argument("--workdir", help="where destinations are made (default: the temp folder)")
    parser.add_argument("--json", help="also write the per-run measurements to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    # Internal: run one side in this (child) process.
    parser.add_argument("--child", choices=("baseline", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.repeats < 1 or args.scale <= 0:
        parser.error("--repeats must be >= 1 and --scale > 0")
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
