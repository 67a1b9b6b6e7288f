"""Permission problems and read-only trees, seen by an unprivileged user.

CI runs as root, for whom every file is writable, so the commands run here as ``nobody``: the
test process forks, the child drops to nobody's uid and gid and runs the real ``mirage-data``
command in-process (the interpreter lives in a folder nobody may not enter, so it cannot be
started afresh as nobody). Run as an ordinary user, the commands simply run as that user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import mirage_data.download.api  # noqa: F401  (loaded before dropping privileges)
import mirage_data.download.fetcher  # noqa: F401
import mirage_data.install.adopt  # noqa: F401
import mirage_data.install.content  # noqa: F401
from collections_for_tests import FGS_RAW, dark_bytes, gz, make_collection
from mirage_data import download_reffiles
from mirage_data.cli import main

NOBODY = pwd.getpwnam("nobody")


def run_as_unprivileged(*args: str) -> tuple[int, str, str]:
    """Run ``mirage-data ARGS`` as nobody (when root); return (exit status, stdout, stderr).

    A Python exception escaping the command (a traceback for the user) fails the test."""
    if os.geteuid() != 0:
        return _invoke(args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, run, report, exit
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            payload = json.dumps(_invoke(args))
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001 - reported by the exit status
            status = 3
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    return tuple(json.loads(data))  # type: ignore[return-value]


def _invoke(args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), prog_name="mirage-data")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        return 99, result.stdout, "TRACEBACK " + tb
    return result.exit_code, result.stdout, result.stderr


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def shared(tmp_path_factory):
    """A folder everybody may enter (pytest's own tmp folders are private to root), holding a
    small collection and a tree installed from it by root, writable by root only."""
    base = Path(tempfile.mkdtemp(prefix="mirage-perm-"))
    base.chmod(0o755)
    plain = {rp: dark_bytes(40_000, seed=i) for i, rp in enumerate(FGS_RAW[:3])}
    root = base / "collection"
    catalog = make_collection(root, {rp: gz(d) for rp, d in plain.items()})
    catalog_file = base / "catalog.tsv"
    catalog.write(catalog_file)
    download_reffiles(base / "tree", "fgs", dark_type="raw", skip_psfs=True, mirror=root, catalog=catalog, quiet=True)
    for p in [base, *base.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    try:
        yield base, root, catalog_file, plain
    finally:
        shutil.rmtree(base)


def one_clear_line(err: str) -> str:
    assert "TRACEBACK" not in err and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_status_and_verify_on_a_read_only_tree_write_nothing(shared):
    base, _, _, _ = shared
    md = base / "tree" / "mirage_data"
    before = snapshot(base)
    code, out, err = run_as_unprivileged("status", str(md))
    assert code == 0, (out, err)
    assert "installed" in out
    code, out, err = run_as_unprivileged("verify", str(md))
    assert code == 0, (out, err)
    assert f"could not record the results in {md / '.mirage-data'} (read-only)" in out
    assert snapshot(base) == before  # no lock, no inventory, no record: nothing at all


def test_status_of_a_read_only_tree_without_state_says_it_recorded_nothing(shared):
    base, _, _, _ = shared
    md = base / "tree" / "mirage_data"
    shutil.rmtree(md / ".mirage-data")  # as a tree copied without mirage-data's own state
    before = snapshot(base)
    code, out, err = run_as_unprivileged("status", str(md))
    assert code == 0, (out, err)
    assert out.count("untracked: ") == 3 and "read-only for you: nothing was recorded" in out
    code, out, err = run_as_unprivileged("verify", str(md))
    assert code == 0 and "3 collection files are in the tree but not recorded" in out, (out, err)
    assert snapshot(base) == before


def test_writing_into_a_read_only_tree_is_one_clear_line(shared):
    base, root, catalog_file, _ = shared
    md = base / "tree" / "mirage_data"
    before = snapshot(base)
    for args, where in [
        (["download", str(base / "tree"), "-i", "fgs", "--skip-psfs", "--mirror", str(root)], md),
        (["adopt", str(md)], md),
        (["repair", str(md), "--mirror", str(root)], md),
    ]:
        code, out, err = (
            run_as_unprivileged(*args, "--catalog", str(catalog_file))
            if args[0] == "download"
            else (run_as_unprivileged(*args))
        )
        line = one_clear_line(err)
        assert code == 2, (args, out, err)
        assert str(where) in line and ("chmod" in line or "writable" in line), line
    assert snapshot(base) == before


def test_a_folder_that_cannot_be_written_names_the_real_file(shared):
    base, root, catalog_file, plain = shared
    md = base / "tree" / "mirage_data"
    for p in [md, *md.rglob("*")]:  # the tree is the user's, except one folder
        os.chown(p, NOBODY.pw_uid, NOBODY.pw_gid)
    darks = md / "fgs/darks/raw"
    os.chown(darks, 0, 0)
    lost = (md / FGS_RAW[1]).with_suffix("")
    lost.unlink()  # deleted by hand: it must be fetched again into a folder that refuses it
    code, out, err = run_as_unprivileged(
        "download",
        str(base / "tree"),
        "-i",
        "fgs",
        "--skip-psfs",
        "--dark-type",
        "raw",
        "-q",
        "--mirror",
        str(root),
        "--catalog",
        str(catalog_file),
    )
    assert code == 1, (out, err)
    assert "TRACEBACK" not in err
    failure = [line for line in err.splitlines() if FGS_RAW[1] in line and "permission denied" in line]
    assert failure and str(lost) in failure[0], err
    assert ".mdtmp" not in err and ".staging" not in err, err
    assert not lost.exists()
    for rp in (FGS_RAW[0], FGS_RAW[2]):
        assert (md / rp).with_suffix("").read_bytes() == plain[rp]
