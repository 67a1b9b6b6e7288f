"""``prepare`` end to end: a program of yaml files for the three instruments, a small collection
served over loopback, a CRDS server over loopback (real ``crds`` client, JSON-RPC and file
downloads), then Mirage's own CRDS code, offline, in a fresh process.

Every test checks that no connection left the machine (`network_guard`, installed by the root
conftest before any import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import crds_service as C
import mirage_yamls as M
import network_guard
from mirage_data.calibration.crds import SERVERLESS_URL
from mirage_data.cli import main
from mirage_data.exposures.ipc import invert_ipc_kernel
from mirage_data.exposures.prepare import prepare
from support.faulty_server import FaultyServer

NIRCAM_CR = "nircam/cosmic_ray_library/mirage_nircam_cr_library.tar.gz"
PSF = "nircam/psf_libraries/gridded_psf_libraries/"


@pytest.fixture(autouse=True)
def no_network():
    before = len(network_guard.attempts)
    yield
    assert network_guard.attempts[before:] == [], "a test reached for the network"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("exposure_collection")
    return root, M.make_exposure_collection(root)


@pytest.fixture(scope="module")
def crds_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("crds_server")
    C.write_crds_files(root)
    return root


@pytest.fixture
def servers(collection, crds_files):
    root, catalog = collection
    with FaultyServer(root) as files, C.CrdsServer(crds_files) as crds:
        yield files, crds, catalog


def program(folder: Path) -> dict[str, Path]:
    """Eight exposures: three instruments, imaging and WFSS, several filters, patterns and nint."""
    y = {
        "a1": M.write_yaml(folder, "a1.yaml", "nircam"),
        "a1_nint3": M.write_yaml(folder, "a1_nint3.yaml", "nircam", nint=3, filter="F150W"),
        "a5_bright2": M.write_yaml(folder, "a5.yaml", "nircam", aperture="NRCA5_FULL", readpatt="BRIGHT2"),
        "a5_wfss": M.write_yaml(
            folder, "a5_wfss.yaml", "nircam", mode="wfss", aperture="NRCA5_FULL", filter="F444W", pupil="GRISMR"
        ),
        "nis": M.write_yaml(folder, "nis.yaml", "niriss"),
        "nis_wfss": M.write_yaml(folder, "nis_wfss.yaml", "niriss", mode="wfss", filter="GR150R", pupil="F150W"),
        "g1": M.write_yaml(folder, "g1.yaml", "fgs"),
        "g2": M.write_yaml(folder, "g2.yaml", "fgs", aperture="FGS2_FULL", nint=2, readpatt="FGS", ngroup=2),
    }
    return y


def expected_files() -> set[str]:
    darks = M.dark_entries()
    out = {NIRCAM_CR, "niriss/cosmic_ray_library/mirage_niriss_cr_library.tar.gz"}
    out |= {"fgs/cosmic_ray_library/mirage_fgs_cr_library.tar.gz"}
    out |= {PSF + n for n in ("nircam_Amodule_det12_gridded_psf_library.tar.gz", "nircam_psf_wings_library.tar.gz")}
    out |= {PSF + "nircam_Amodule_det345_gridded_psf_library.tar.gz"}
    out |= {"niriss/psf_libraries/gridded_psf_libraries/niriss_gridded_psf_library.tar.gz"}
    out |= {"fgs/psf_libraries/gridded_psf_libraries/fgs_gridded_psf_library.tar.gz"}
    for key, n in ((("nircam", "A1"), 3), (("nircam", "A5"), 1), (("niriss", "NIS"), 1), (("fgs", "GUIDER1"), 1)):
        out |= {e.relative_path for e in darks[key][:n]}
    out |= {e.relative_path for e in darks[("fgs", "GUIDER2")][:2]}
    return out


def gets(server) -> list[str]:
    return sorted(r.path for r in server.requests if r.method == "GET")


OFFLINE_CHECK = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import network_guard
network_guard.install()
import yaml
from mirage.reference_files import crds_tools
from mirage.utils.constants import CRDS_FILE_TYPES
from astropy.io import fits
out = {}
for original, resolved in json.loads(sys.argv[2]):
    params = yaml.safe_load(open(original))
    done = yaml.safe_load(open(resolved))
    query = crds_tools.dict_from_yaml(params)
    mine = {}
    for key, reftype in CRDS_FILE_TYPES.items():
        if key == "transmission":
            continue
        q = dict(query)
        if key == "pixelflat" and params["Inst"]["mode"] in ("wfss", "ts_grism") and q["INSTRUME"] == "NIRCAM":
            q["PUPIL"] = "CLEAR"
        theirs = crds_tools.get_reffiles(q, [reftype])[reftype]
        given = done["Reffiles"][key]
        if key == "ipc":
            given = os.path.join(os.path.dirname(theirs), fits.getheader(given, 1)["IPCSRC"])
        mine[key] = (theirs == given, os.path.isfile(theirs))
    out[resolved] = mine
print(json.dumps({"results": out, "attempts": network_guard.attempts}))
"""


def offline_check(pairs, env_lines: list[str], tmp_path: Path) -> dict:
    """Mirage's own CRDS look-ups (crds_tools) in a fresh process with only the printed environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    for line in env_lines:
        if line.startswith("export "):
            name, value = line[len("export ") :].split("=", 1)
            env[name] = value.strip('"')
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            OFFLINE_CHECK,
            str(Path(__file__).parent),
            json.dumps([[str(a), str(b)] for a, b in pairs]),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def check_resolved(path: Path) -> None:
    """Every reference a resolved yaml names is on disk, as Mirage will look for it."""
    params = yaml.safe_load(path.read_text())
    ref = params["Reffiles"]
    dark = Path(ref["linearized_darkfile"])
    assert dark.is_file()
    for key in ("badpixmask", "superbias", "linearity", "saturation", "gain", "pixelflat", "astrometric", "ipc"):
        assert Path(ref[key]).is_file(), key
    assert Path(ref["pixelAreaMap"]).is_file() and ref["invertIPC"] is False
    assert Path(ref["ipc"]).name.startswith("Kernel_to_add_IPC_effects_from_jwst_")
    assert Path(params["simSignals"]["psfpath"]).is_dir()
    cr = params["cosmicRay"]
    for n in range(10):
        assert (Path(cr["path"]) / f"CRs_MCD1.7_{cr['library']}_{n:02d}_{cr['suffix']}.fits").is_file()
    if params["Readout"]["nint"] > 1:
        same = sorted(dark.parent.glob("*.fits" if "FGS" not in params["Readout"]["array_name"] else "*_49*_*fits"))
        assert len(same) >= min(params["Readout"]["nint"], 2)


def test_dry_run_then_prepare_then_offline(tmp_path, servers):
    files, crds, catalog = servers
    yamls = program(tmp_path / "program")
    md, out, cache = tmp_path / "mirage_data", tmp_path / "out", tmp_path / "crds_cache"
    kw = dict(catalog=catalog, mirror=files.url, crds_path=cache, crds_server=crds.url)

    dry = prepare([tmp_path / "program"], md, out, dry_run=True, **kw)
    assert set(dry.to_fetch) == expected_files()
    assert dry.bytes_to_fetch == sum(e.expected_size for e in catalog if e.relative_path in expected_files())
    assert gets(files) == [] and not out.exists() and not md.exists()
    assert crds.downloads and all(d.endswith("map") for d in crds.downloads)  # rules only, no references
    assert dry.crds_context == C.BUILD and "build context of the installed jwst" in dry.crds_context_reason
    assert set(dry.crds_names.values()) == {"to fetch"} and len(dry.crds_names) > 30
    text = dry.describe()
    assert "a1_nint3.yaml: nircam NRCA1_FULL F150W/CLEAR RAPID ngroup=3 nint=3: 6 collection files (6 to fetch" in text
    assert (
        "a5_wfss.yaml" in text and "needs from elsewhere: grism configuration files (GRISM_NIRCAM repository)" in text
    )
    assert dry.exit_status == 0, [p.message for _, p in dry.problems]

    report = prepare([tmp_path / "program"], md, out, **kw)
    assert report.exit_status == 0, report.describe()
    assert set(report.fetched) == expected_files() and report.failed == []
    assert set(gets(files)) == expected_files()  # the collection's files, each whole, nothing else
    assert sorted(p.name for p in report.written) == sorted(p.name for p in yamls.values())
    for path in report.written:
        check_resolved(path)
    refs = [d for d in crds.downloads if not d.endswith("map")]
    assert len(refs) == len(set(refs)) == len(report.crds_names)  # each chosen reference once
    assert 'export CRDS_CONTEXT="jwst_9100.pmap"' in report.env_lines
    assert f'setenv CRDS_SERVER_URL "{SERVERLESS_URL}"' in report.env_lines
    assert (out / "mirage_offline.sh").read_text().splitlines() == report.env_lines[: len(report.env_lines) // 2]

    # offline: Mirage's own code, fresh process, serverless, finds exactly the resolved files
    pairs = [(yamls[k], out / yamls[k].name) for k in yamls]
    result = offline_check(pairs, report.env_lines, tmp_path)
    assert result["attempts"] == []
    for resolved, keys in result["results"].items():
        assert all(same and exists for same, exists in keys.values()), (resolved, keys)

    # a rerun with everything present, server-less: nothing fetched, same context (recorded)
    files.reset_stats()
    again = prepare(
        [tmp_path / "program"], md, out, catalog=catalog, mirror=files.url, crds_path=cache, crds_server=SERVERLESS_URL
    )
    assert again.exit_status == 0 and again.to_fetch == [] and again.fetched == [] and gets(files) == []
    assert again.crds_context == C.BUILD and again.crds_context_reason.startswith("recorded by the earlier run")
    assert set(again.crds_names.values()) == {"cache"}
    assert [yaml.safe_load(p.read_text()) for p in again.written] == [
        yaml.safe_load((out / p.name).read_text()) for p in again.written
    ]


def test_network_guard_is_active(tmp_path):
    """Control: outside connections and name look-ups are refused and recorded, also those of the
    crds client given a real-looking server, so an empty record in the other tests means something."""
    import socket

    from mirage_data.calibration.crds import crds_client, server_is_reachable

    before = len(network_guard.attempts)
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1
    with pytest.raises(OSError):
        socket.getaddrinfo("jwst-crds.stsci.edu", 443)
    with crds_client(tmp_path / "cache", "https://jwst-crds.invalid"):
        assert server_is_reachable() is False
    seen = network_guard.attempts[before:]
    assert seen[:2] == [("connect", ("192.0.2.1", 443)), ("getaddrinfo", "jwst-crds.stsci.edu")]
    assert ("getaddrinfo", "jwst-crds.invalid") in seen
    del network_guard.attempts[before:]  # expected here


def test_inverted_ipc_kernel_adds_what_the_crds_kernel_removes():
    rng = np.random.default_rng(3)
    kernel = np.zeros((3, 3))
    kernel[1, 1] = 1.0
    kernel[[0, 1, 1, 2], [1, 0, 2, 1]] = -rng.uniform(0.005, 0.02, 4)
    inverse = invert_ipc_kernel(kernel)
    # convolving the two kernels (circularly, over the kernel axes) gives a delta function
    both = np.real(np.fft.ifft2(np.fft.fft2(kernel) * np.fft.fft2(np.fft.ifftshift(inverse))))
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    np.testing.assert_allclose(both, delta, atol=1e-12)
    # 4-D kernels with reference pixels keep the border as it was
    big = np.zeros((3, 3, 2048, 2048), np.float32)
    big[1, 1] = 1.0
    big[0, 1, 4:2044, 4:2044] = -0.01
    big[:, :, :4] = 7.0
    out = invert_ipc_kernel(big)
    assert np.all(out[:, :, :4] == 7.0) and out[0, 1, 100, 100] > 0


def test_crds_from_a_read_only_shared_cache(tmp_path, servers, collection):
    files, _, catalog = servers
    shared = tmp_path / "institute_crds"
    C.write_crds_files(shared)
    C.write_server_config(shared, C.LATEST)
    (shared / "config" / "jwst" / "ref_cache_subdir_mode").write_text("instrument")
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in shared.rglob("*")}
    yamls = tmp_path / "program"
    M.write_yaml(yamls, "a1.yaml")
    M.write_yaml(yamls, "nis.yaml", "niriss")
    cache = tmp_path / "my_crds"
    dry = prepare(
        [yamls],
        tmp_path / "md",
        tmp_path / "out",
        catalog=catalog,
        crds_path=cache,
        crds_server=SERVERLESS_URL,
        crds_from=shared,
        link=True,
        dry_run=True,
    )
    assert dry.exit_status == 0 and dry.crds_context == C.LATEST and not cache.exists()
    assert set(dry.crds_names.values()) == {f"link from {shared}"} and len(dry.crds_names) == 20
    report = prepare(
        [yamls],
        tmp_path / "md",
        tmp_path / "out",
        catalog=catalog,
        mirror=files.url,
        crds_path=cache,
        crds_server=SERVERLESS_URL,
        crds_from=shared,
        link=True,
    )
    assert report.exit_status == 0, report.describe()
    assert report.crds_context == C.LATEST and "server_config" in report.crds_context_reason
    assert set(report.crds_names.values()) == {f"linked from {shared}"}
    for name in report.crds_names:
        mine = next(cache.rglob(name))
        theirs = next(shared.rglob(name))
        assert os.path.samefile(mine, theirs)  # a hard link: no copy, no download
    assert (cache / "mappings" / "jwst" / C.LATEST).is_file()
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in shared.rglob("*")} == before  # untouched
    for path in report.written:
        check_resolved(path)


def test_shared_read_only_mirage_data(tmp_path, servers):
    """An institute's MIRAGE_DATA is used as it is; what is missing goes to the user's folder."""
    files, crds, catalog = servers
    shared = tmp_path / "institute" / "mirage_data"
    first = tmp_path / "first"
    M.write_yaml(first, "a1.yaml")
    kw = dict(catalog=catalog, mirror=files.url, crds_path=tmp_path / "crds", crds_server=crds.url)
    assert prepare([first], shared, tmp_path / "out0", **kw).exit_status == 0
    before = sorted((str(p), p.stat().st_mtime_ns) for p in shared.rglob("*"))

    mine = tmp_path / "mine"
    second = tmp_path / "second"
    M.write_yaml(second, "a1.yaml")
    M.write_yaml(second, "a1_nint3.yaml", nint=3)
    M.write_yaml(second, "nis.yaml", "niriss")
    files.reset_stats()
    report = prepare([second], shared, tmp_path / "out", fetch_into=mine, **kw)
    assert report.exit_status == 0, report.describe()
    a1_darks = [e.relative_path for e in M.dark_entries()[("nircam", "A1")]]
    assert set(gets(files)) == set(a1_darks[1:]) | {
        "niriss/cosmic_ray_library/mirage_niriss_cr_library.tar.gz",
        "niriss/psf_libraries/gridded_psf_libraries/niriss_gridded_psf_library.tar.gz",
        M.dark_entries()[("niriss", "NIS")][0].relative_path,
    }
    assert sorted((str(p), p.stat().st_mtime_ns) for p in shared.rglob("*")) == before  # nothing written there
    assert report.where[NIRCAM_CR] == str(shared) and report.where[a1_darks[0]] == str(shared)
    assert report.where[a1_darks[1]] == str(mine) == report.where[a1_darks[2]]
    assert f"    fetched {a1_darks[1]}  [{mine}]" in report.describe()
    one = yaml.safe_load((tmp_path / "out" / "a1.yaml").read_text())
    three = yaml.safe_load((tmp_path / "out" / "a1_nint3.yaml").read_text())
    assert one["Reffiles"]["linearized_darkfile"].startswith(str(shared))
    assert one["simSignals"]["psfpath"] == str(shared / "nircam" / "gridded_psf_library")
    # nint=3: Mirage globs one folder, so the shared dark is linked beside the two fetched ones
    folder = Path(three["Reffiles"]["linearized_darkfile"]).parent
    assert str(folder).startswith(str(mine)) and len(list(folder.glob("*.fits"))) == 3
    assert [p.is_symlink() for p in sorted(folder.glob("*.fits"))].count(True) == 1
    assert yaml.safe_load((tmp_path / "out" / "nis.yaml").read_text())["cosmicRay"]["path"].startswith(str(mine))
    for path in report.written:
        check_resolved(path)


def test_read_only_mirage_data_without_a_writable_folder(tmp_path, servers):
    files, crds, catalog = servers
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    M.write_yaml(tmp_path / "p", "a1.yaml")
    report = prepare(
        [tmp_path / "p"],
        blocker / "mirage_data",
        tmp_path / "out",
        catalog=catalog,
        mirror=files.url,
        crds_path=tmp_path / "crds",
        crds_server=crds.url,
    )
    assert report.exit_status == 2 and report.written == [] and gets(files) == []
    assert any("read-only; give --fetch-into DIR" in p.message for _, p in report.problems)


def test_bad_input_never_stops_the_others(tmp_path, servers, collection):
    files, crds, catalog = servers
    p = tmp_path / "program"
    M.write_yaml(p, "good.yaml")
    M.write_yaml(p, "flare.yaml", cr_library="FLARE")
    M.write_yaml(p, "f090w.yaml", filter="F090W")  # no PSF library in the collection
    M.write_yaml(p, "deep.yaml", readpatt="DEEP8", ngroup=3)  # 60 frames of a 10-frame dark
    M.write_yaml(p, "blocked.yaml", "niriss")
    (p / "broken.yaml").write_text("Readout: {ngroup: 3\n")
    (p / "miri.yaml").write_text(M.yaml_text().replace("NIRCam", "MIRI", 1))
    out = tmp_path / "out"
    (out / "blocked.yaml").mkdir(parents=True)  # the resolved yaml cannot be written there
    result = CliRunner().invoke(
        main,
        [
            "prepare",
            str(p),
            "--mirage-data",
            str(tmp_path / "md"),
            "--out",
            str(out),
            "--catalog",
            str(collection[0] / "catalog.tsv"),
            "--mirror",
            files.url,
            "--crds-path",
            str(tmp_path / "crds"),
            "--crds-server",
            crds.url,
            "-q",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if ": error: " in line]
    assert len([line for line in lines if line.startswith(str(p / "broken.yaml"))]) == 1
    assert any(line.startswith(str(p / "miri.yaml") + ": error: unknown instrument 'MIRI'") for line in lines)
    assert any(line.startswith("flare.yaml: error: cosmicRay:library 'FLARE'") for line in lines)
    assert any(line.startswith("f090w.yaml: error: no PSF library for nircam NRCA1 F090W/CLEAR") for line in lines)
    assert any(line.startswith("deep.yaml: error: 3 groups of DEEP8 need 60 frames") for line in lines)
    assert any(line.startswith("blocked.yaml: error: cannot write the resolved yaml") for line in lines)
    assert sorted(x.name for x in out.iterdir()) == sorted(
        [
            "good.yaml",
            "blocked.yaml",
            "ipc_kernels",
            "mirage_offline.sh",
            "mirage_offline.csh",
            ".mirage-data-prepare.json",
        ]
    )
    assert (out / "blocked.yaml").is_dir() and not list((out / "blocked.yaml").iterdir())
    leftovers = [x for x in tmp_path.rglob("*") if ".tmp" in x.name or x.name.startswith(".") and "link" in x.name]
    assert leftovers == []
    check_resolved(out / "good.yaml")


def test_failed_fetch_leaves_that_exposure_out(tmp_path, collection, crds_files):
    root, catalog = collection
    served = tmp_path / "served"
    import shutil

    shutil.copytree(root, served)
    gone = M.dark_entries()[("niriss", "NIS")][0].relative_path
    (served / gone).unlink()
    p = tmp_path / "p"
    M.write_yaml(p, "a1.yaml")
    M.write_yaml(p, "nis.yaml", "niriss")
    with FaultyServer(served) as files, C.CrdsServer(crds_files) as crds:
        report = prepare(
            [p],
            tmp_path / "md",
            tmp_path / "out",
            catalog=catalog,
            mirror=files.url,
            crds_path=tmp_path / "crds",
            crds_server=crds.url,
            options=None,
        )
    assert report.exit_status == 1
    assert [r for r, _ in report.failed] == [gone]
    assert [x.name for x in report.written] == ["a1.yaml"]
    assert not (tmp_path / "out" / "nis.yaml").exists()
    assert any("failed to fetch" in pr.message for w, pr in report.problems if w == "nis.yaml")


def test_dry_run_command(tmp_path, collection, servers):
    files, crds, catalog = servers
    M.write_yaml(tmp_path / "p", "a1.yaml")
    args = [
        "prepare",
        str(tmp_path / "p"),
        "--mirage-data",
        str(tmp_path / "md"),
        "--out",
        str(tmp_path / "out"),
        "--catalog",
        str(collection[0] / "catalog.tsv"),
        "--crds-path",
        str(tmp_path / "crds"),
        "--crds-server",
        crds.url,
        "--dry-run",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (
        "a1.yaml: nircam NRCA1_FULL F200W/CLEAR RAPID ngroup=3 nint=1: 4 collection files (4 to fetch" in result.output
    )
    assert f"    fetch   {NIRCAM_CR}  [{tmp_path / 'md'}]" in result.output
    assert "4 collection files to fetch" in result.output and "default collection" in result.output
    assert not (tmp_path / "out").exists() and gets(files) == []
    # the packaged catalog: the whole default collection is hundreds of GB
    result = CliRunner().invoke(main, args[:6] + args[8:])
    assert result.exit_code == 0 and " of the 505 GB default collection" in result.output, result.output
    bad = CliRunner().invoke(
        main,
        [
            "prepare",
            str(tmp_path / "nothing"),
            "--mirage-data",
            "x",
            "--out",
            "y",
            "--dry-run",
            "--crds-server",
            SERVERLESS_URL,
            "--crds-path",
            str(tmp_path / "c"),
        ],
    )
    assert bad.exit_code == 2 and "no such file or folder" in bad.output and "Traceback" not in bad.output


def test_own_cache_folders_in_one_process(tmp_path, servers, monkeypatch):
    """crds reads its settings once per process; two calls with their own caches still use them,
    and the process's own CRDS settings are as they were afterwards."""
    import crds
    from crds.core import config

    files, crds_server, catalog = servers
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "process_cache"))
    monkeypatch.setenv("CRDS_SERVER_URL", SERVERLESS_URL)
    config.get_crds_state()  # noqa: B018  (crds configured from the environment above)
    before = crds.core.config.get_crds_path()
    M.write_yaml(tmp_path / "p", "g1.yaml", "fgs")
    for name in ("first", "second"):
        report = prepare(
            [tmp_path / "p"],
            tmp_path / "md",
            tmp_path / f"out_{name}",
            catalog=catalog,
            mirror=files.url,
            crds_path=tmp_path / name,
            crds_server=crds_server.url,
        )
        assert report.exit_status == 0, report.describe()
        assert all(str(p).startswith(str(tmp_path / name)) for p in (tmp_path / name).rglob("jwst_fgs_gain_*.fits"))
        assert len(list((tmp_path / name).rglob("jwst_fgs_gain_*.fits"))) == 1
        gain = yaml.safe_load((tmp_path / f"out_{name}" / "g1.yaml").read_text())["Reffiles"]["gain"]
        assert gain.startswith(str(tmp_path / name))
    assert os.environ["CRDS_PATH"] == str(tmp_path / "process_cache") and crds.core.config.get_crds_path() == before
    assert os.environ["CRDS_SERVER_URL"] == SERVERLESS_URL and not (tmp_path / "process_cache").exists()
