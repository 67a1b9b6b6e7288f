"""Real sizes: where the source tells a file's size (stat of a mirror folder, HTTP Content-Length),
plans, progress and messages use it, not the catalog's estimate of the real collection; the space
needed once unpacked stays an estimate, from the gzip trailer (issue 8, section 1)."""

from __future__ import annotations

import gzip
import io

from click.testing import CliRunner

from fits_files import REAL, cr_file, dark, gz, psf_file, serve, tarball
from mirage_data.cli import main
from mirage_data.collection.selection import Selection
from mirage_data.download.api import download_reffiles
from mirage_data.download.plan import gzip_unpacked_estimate, make_plan
from mirage_data.progress import LogProgress, QuietProgress
from mirage_data.testing.server import CollectionServer
from mirage_data.units import format_size

FGS = [e for e in REAL if e.instrument == "fgs"]


def fgs_files() -> dict:
    """Every FGS file of the real catalog, as a small valid file (a few kB each)."""
    files = {}
    for e in FGS:
        if e.is_dark:
            files[e] = gz(dark(e.dark_kind, detector=e.detector))
        elif e.group == "cosmic_ray_library":
            files[e] = tarball(
                [("mirage_data/fgs/cosmic_ray_library/CRs_MCD1.7_SUNMIN_00_IPC_FGS_GUIDER1.fits", cr_file())]
            )
        else:
            name = "mirage_data/fgs/gridded_psf_library/fgs_guider1_fovp8_samp2_npsf1_predicted_realization0.fits"
            files[e] = tarball([(name, psf_file("GUIDER1").replace(b"'NIRCAM  '", b"'FGS     '"))])
    return files


def mirror(tmp_path):
    files = fgs_files()
    root = tmp_path / "mirror"
    catalog = serve(root, files)
    return root, files, catalog


def test_a_plan_from_a_mirror_folder_uses_its_exact_sizes(tmp_path):
    root, files, catalog = mirror(tmp_path)
    selection = Selection(instrument="fgs", dark_type="both")
    estimated = make_plan(tmp_path / "dest", selection, catalog)
    plan = make_plan(tmp_path / "dest", selection, catalog, base=str(root))
    assert plan.exact and not estimated.exact
    assert plan.bytes_to_fetch == sum(len(d) for d in files.values())
    unpacked = sum(len(gzip.decompress(d)) for d in files.values())
    assert plan.space_needed == unpacked + max(len(d) for d in files.values())
    # The catalog's estimate of the real collection is some 100 GB: a small disk refuses it.
    plan.free_bytes = estimated.free_bytes = 50 << 20
    plan.check_space()
    assert estimated.space_needed > 10 << 30
    text = plan.describe()
    assert f"To fetch: {len(files)} files, {format_size(plan.bytes_to_fetch)};" in text
    assert "needed once unpacked: about" in text


def test_download_from_a_mirror_folder_shows_exact_sizes(tmp_path):
    root, files, catalog = mirror(tmp_path)
    out = io.StringIO()
    download_reffiles(
        tmp_path / "dest", "fgs", dark_type="both", mirror=root, catalog=catalog, progress=LogProgress(out)
    )
    lines = out.getvalue().splitlines()
    for entry, data in files.items():
        assert f"fetching {entry.name} ({format_size(len(data))})" in lines, (entry.name, lines[:3])


class Sizes(QuietProgress):
    """Keeps the sizes progress was given (an observer of the real fetch, not a stand-in)."""

    def __init__(self) -> None:
        self.started: dict[str, int | None] = {}
        self.told: dict[str, int | None] = {}
        self.totals: list[int] = []

    def start(self, total_files, total_bytes):
        self.totals.append(total_bytes)

    def total_changed(self, total_bytes):
        self.totals.append(total_bytes)

    def file_started(self, key, label, size):
        self.started[key] = size

    def file_resized(self, key, size, already):
        self.told[key] = size


def test_http_progress_uses_content_length_not_the_catalogs_estimate(tmp_path):
    root, files, catalog = mirror(tmp_path)
    progress = Sizes()
    with CollectionServer(root) as server:
        download_reffiles(
            tmp_path / "dest", "fgs", dark_type="both", mirror=server.url, catalog=catalog, progress=progress
        )
    # Nothing claimed that the server did not tell: unknown at the start, or its exact size (when
    # the plan asked the server because the estimates did not fit this disk).
    sizes = {e.relative_path: len(d) for e, d in files.items()}
    assert all(size in (None, sizes[rp]) for rp, size in progress.started.items()), progress.started
    assert progress.told == sizes
    assert progress.totals[-1] == sum(len(d) for d in files.values())


def test_estimates_that_do_not_fit_are_checked_with_an_http_source(tmp_path):
    """The real collection's estimates (some 100 GB for FGS) do not fit a 50 MB disk; a few-MB
    HTTP mirror does: the source is asked before refusing, and the plan then has its sizes."""
    root, files, catalog = mirror(tmp_path)
    with CollectionServer(root) as server:
        plan = make_plan(tmp_path / "dest", Selection(instrument="fgs", dark_type="both"), catalog, base=server.url)
        assert not plan.exact
        plan.free_bytes = 50 << 20
        plan.check_space()
    assert plan.exact and plan.bytes_to_fetch == sum(len(d) for d in files.values())
    unpacked = sum(len(gzip.decompress(d)) for d in files.values())
    assert plan.space_needed == unpacked + max(len(d) for d in files.values())


def test_plan_command_shows_a_mirrors_sizes(tmp_path):
    root, files, catalog = mirror(tmp_path)
    catalog.write(tmp_path / "c.tsv")
    args = ["plan", str(tmp_path / "dest"), "-i", "fgs", "--dark-type", "both", "--catalog", str(tmp_path / "c.tsv")]
    result = CliRunner().invoke(main, [*args, "--mirror", str(root)])
    assert result.exit_code == 0, result.output
    assert f"{format_size(sum(len(d) for d in files.values()))};" in result.output
    assert "Warning" not in result.output


def test_gzip_estimate_reads_the_trailer_and_unwraps_4_gib(tmp_path):
    path = tmp_path / "a.gz"
    data = gzip.compress(bytes(300_000), mtime=0)
    path.write_bytes(data)
    assert gzip_unpacked_estimate(path, len(data)) == 300_000
    # A 5 GiB gzip file whose size field says 123: it unpacks to more than 5 GiB, so 8 GiB + 123.
    big = tmp_path / "big.gz"
    with open(big, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00")
        f.truncate(5 << 30)  # sparse: no disk used
        f.seek((5 << 30) - 4)
        f.write((123).to_bytes(4, "little"))
    assert gzip_unpacked_estimate(big, big.stat().st_size) == (2 << 32) + 123
