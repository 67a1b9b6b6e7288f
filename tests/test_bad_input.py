"""Fast, clear failures: bad input is refused before anything runs (exit status 2, one line,
nothing created); a mirror that refuses connections and a full disk fail at once, saying why.

Real CLI invocations, a real closed loopback port, a real small tmpfs, the plain static server.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import urllib3.util.connection
from astropy.io import fits
from click.testing import CliRunner

from collections_for_tests import FGS_RAW, dark_bytes, gz, make_collection
from mirage_data import download_reffiles
from mirage_data.cli import main
from mirage_data.download.api import repair_install
from mirage_data.download.errors import DownloadFailed
from mirage_data.download.transfer import TransferOptions
from mirage_data.install.upkeep import NotAnInstall, verify_install
from mirage_data.progress import QuietProgress
from mirage_data.testing.server import CollectionServer
from test_adopt import CountingHandler, CountingServer

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input") / "collection"
    plain = {rp: dark_bytes(300_000, seed=i) for i, rp in enumerate(FGS_RAW[:3])}
    return root, make_collection(root, {rp: gz(d) for rp, d in plain.items()})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str):
    result = CliRunner().invoke(main, list(args), prog_name="mirage-data")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the user would see
    return result


# --------------------------------------------------------------------------- checked first


def bad_cli_cases(tmp_path: Path, root: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (extra arguments, text the one line must contain)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {
        "empty mirror": (["--mirror", ""], "mirror is empty"),
        "URL without a host": (["--mirror", "http:///mirage/"], "has no host"),
        "ftp mirror": (["--mirror", "ftp://example.org/mirage/"], "unsupported mirror"),
        "mirror path is a file": (["--mirror", str(a_file)], "is a file, not a folder"),
        "missing mirror folder": (["--mirror", str(tmp_path / "nowhere")], "does not exist"),
        "NaN connect timeout": (["--connect-timeout", "nan"], "connect_timeout must be a positive number"),
        "NaN read timeout": (["--read-timeout", "nan"], "read_timeout must be a positive number"),
        "infinite read timeout": (["--read-timeout", "inf"], "read_timeout must be a positive number"),
        "negative read timeout": (["--read-timeout", "-3"], "-3"),
    }


def test_bad_cli_input_is_refused_before_anything_runs(collection, tmp_path):
    root, catalog = collection
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    dest = tmp_path / "dest"
    refused = 0
    for name, (extra, text) in bad_cli_cases(tmp_path, root).items():
        args = ["download", str(dest), "-i", "fgs", "--skip-psfs", "--catalog", str(catalog_file)]
        if "--mirror" not in extra:
            args += ["--mirror", str(root)]
        result = run_cli(*args, *extra)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and text in lines[0], (name, result.stderr)
        assert not dest.exists(), name
        refused += 1
    assert refused == 9


def test_a_file_where_a_folder_should_be_is_one_line(collection, tmp_path):
    root, catalog = collection
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    (tmp_path / "d1").mkdir()
    blocker = tmp_path / "d1" / "mirage_data"
    blocker.write_text("keep me")
    dest_file = tmp_path / "d2"
    dest_file.write_text("keep me too")
    for dest, named in ((tmp_path / "d1", blocker), (dest_file, dest_file)):
        result = run_cli("download", str(dest), "-i", "fgs", "--mirror", str(root), "--catalog", str(catalog_file))
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and named.name in line and "is a file" in line, result.stderr
    assert blocker.read_text() == "keep me" and dest_file.read_text() == "keep me too"


@root_only
def test_a_read_only_destination_is_one_line(collection, tmp_path):
    root, catalog = collection
    catalog_file = tmp_path / "catalog.tsv"
    catalog.write(catalog_file)
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        result = run_cli("download", str(mount), "-i", "fgs", "--mirror", str(root), "--catalog", str(catalog_file))
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and f"cannot write to {mount / 'mirage_data'}" in line, result.stderr
        assert "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_api_on_a_folder_that_does_not_exist_raises_and_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "mirage_data"
    with pytest.raises(NotAnInstall, match="does not exist"):
        verify_install(missing)
    with pytest.raises(NotAnInstall, match="does not exist"):
        repair_install(missing, quiet=True)
    assert not (tmp_path / "no").exists()
    result = run_cli("verify", str(missing))
    assert result.exit_code == 2 and "not a folder" in result.stderr


@pytest.mark.parametrize("option", ["single_dark", "skip_darks", "skip_psfs", "link", "force", "dry_run", "quiet"])
def test_boolean_options_reject_strings(collection, tmp_path, option):
    root, catalog = collection
    with pytest.raises(ValueError, match=f"{option} must be True or False, not 'no'"):
        download_reffiles(tmp_path / "d", "fgs", mirror=root, catalog=catalog, **{option: "no"})
    assert not (tmp_path / "d").exists()


def test_transfer_options_refuse_nonsense():
    for bad in (dict(read_timeout=float("nan")), dict(connect_timeout=-1.0), dict(backoff=float("inf"))):
        with pytest.raises(ValueError, match="must be"):
            TransferOptions(**bad)


class ConcurrencyHandler(CountingHandler):
    """Counts GETs and records the most response bodies sent at once (``server.most``)."""

    def send_body(self, f, offset, count, relpath):
        owner = self.server.owner
        with owner.lock:
            owner.active += 1
            owner.most = max(owner.most, owner.active)
        try:
            super().send_body(f, offset, count, relpath)
        finally:
            with owner.lock:
                owner.active -= 1


def test_jobs_and_connections_defaults_keep_the_callers_transfer_options(collection, tmp_path):
    root, catalog = collection
    # Slow bodies overlap whenever several files are fetched at once.
    server = CollectionServer(root, rate_limit=400_000, handler_class=ConcurrencyHandler)
    server.gets, server.lock, server.active, server.most = {}, threading.Lock(), 0, 0
    from collections import Counter

    server.gets = Counter()
    with server:
        download_reffiles(
            tmp_path,
            "fgs",
            dark_type="raw",
            skip_psfs=True,
            mirror=server.url,
            catalog=catalog,
            quiet=True,
            options=TransferOptions(jobs=1, connections=1),
        )
    assert sum(server.gets.values()) == 3
    assert server.most == 1  # the caller's jobs=1 held: one file at a time


# --------------------------------------------------------------------------- fast failures


def test_a_mirror_refusing_connections_fails_at_once_saying_so(collection, tmp_path, monkeypatch):
    root, catalog = collection
    attempts = []
    real = urllib3.util.connection.create_connection

    def counting(address, *args, **kwargs):
        attempts.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    url = f"http://127.0.0.1:{closed_port()}/mirage/"
    options = TransferOptions(jobs=1, retries=6, backoff=0.01)
    with pytest.raises(DownloadFailed) as failed:
        download_reffiles(
            tmp_path, "fgs", dark_type="raw", skip_psfs=True, mirror=url, catalog=catalog, quiet=True, options=options
        )
    results = failed.value.result.report.results
    assert len(results) == 3
    for r in results:
        assert "connection refused" in r.error and r.entry.url(url) in r.error, r.error
    assert len(attempts) <= 2 * 3, attempts  # at most one retry per file, not six


def random_dark(n_bytes: int) -> bytes:
    """A GUIDER2 raw dark whose data does not compress (so its .gz is as large as itself)."""
    rows = n_bytes // 512
    sci = np.random.default_rng(1).integers(0, 65535, (1, 1, rows, 256), dtype=np.uint16)
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"], primary.header["DETECTOR"] = "FGS", "GUIDER2"
    buf = io.BytesIO()
    fits.HDUList([primary, fits.ImageHDU(sci, name="SCI")]).writeto(buf)
    return buf.getvalue()


@root_only
def test_a_full_disk_is_not_retried_and_says_how_much_is_needed_where(tmp_path):
    root = tmp_path / "collection"
    catalog = make_collection(root, {FGS_RAW[0]: gz(random_dark(6 << 20))})
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        with CountingServer(root) as server:
            with pytest.raises(DownloadFailed) as failed:
                download_reffiles(
                    mount,
                    "fgs",
                    dark_type="raw",
                    skip_psfs=True,
                    mirror=server.url,
                    catalog=catalog,
                    force=True,
                    quiet=True,
                    options=TransferOptions(retries=3, backoff=0.01),
                )
            assert server.gets[FGS_RAW[0]] == 1  # not retried
        (result,) = failed.value.result.report.results
        assert "disk full" in result.error and str(mount / "mirage_data") in result.error, result.error
        assert "needs" in result.error and "MB" in result.error, result.error
        assert ".mdtmp" not in result.error and ".staging" not in result.error, result.error
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --------------------------------------------------------------------------- as the seed promises


def test_download_reffiles_prints_the_export_lines_unless_quiet(collection, tmp_path, capsys):
    root, catalog = collection
    kw = dict(dark_type="raw", skip_psfs=True, mirror=root, catalog=catalog, progress=QuietProgress())
    result = download_reffiles(tmp_path / "a", "fgs", **kw)
    out = capsys.readouterr().out
    md = tmp_path / "a" / "mirage_data"
    assert f'export MIRAGE_DATA="{md}"' in out and f'setenv MIRAGE_DATA "{md}"' in out
    download_reffiles(tmp_path / "a", "fgs", quiet=True, **kw)
    assert capsys.readouterr().out == ""
    text = repr(result)
    assert text.startswith("DownloadResult(") and str(md) in text and "installed=3" in text
    assert len(text) < 200 and "CatalogEntry" not in text


@root_only
def test_a_full_disk_under_the_partial_downloads_is_not_retried(tmp_path):
    """The download itself (not the unpacking) runs out of space: partial files live on a
    2 MB filesystem of their own."""
    root = tmp_path / "collection"
    catalog = make_collection(root, {FGS_RAW[0]: gz(random_dark(4 << 20))})
    partial = tmp_path / "mirage_data" / ".mirage-data" / "partial"
    partial.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(partial)], check=True)
    try:
        with CountingServer(root) as server:
            with pytest.raises(DownloadFailed) as failed:
                download_reffiles(
                    tmp_path,
                    "fgs",
                    dark_type="raw",
                    skip_psfs=True,
                    mirror=server.url,
                    catalog=catalog,
                    quiet=True,
                    options=TransferOptions(retries=3, backoff=0.01),
                )
            assert server.gets[FGS_RAW[0]] == 1  # not retried
        (result,) = failed.value.result.report.results
        assert "disk full" in result.error and str(partial) in result.error, result.error
        assert "needs 4." in result.error and "MB for this file" in result.error, result.error
    finally:
        subprocess.run(["umount", str(partial)], check=False)
