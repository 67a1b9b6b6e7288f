"""CRDS look-ups with the real crds client, fully offline, against a CRDS cache built here.

`crds_references`, `resolve_calibration` and `linearize_dark(..., use_crds=True)` are run with
the real ``crds.getreferences`` (no mock). The test writes a complete local CRDS cache into a
temporary folder:

* rules: ``jwst_9000.pmap`` -> ``jwst_nircam_9000.imap`` -> one ``.rmap`` per reference type
  (MASK, SATURATION, SUPERBIAS, LINEARITY), selecting on META.INSTRUMENT.DETECTOR and then on
  the observation date (``Match`` / ``UseAfter``, as the operational JWST rules do), with real
  sha1sums (the client checks them, so no ``CRDS_IGNORE_MAPPING_CHECKSUM``). A second context,
  ``jwst_9001.pmap``, differs only in its SUPERBIAS rule (to see that a context given by the
  caller is used);
* reference files: synthetic full-frame files (`jwst_reference_files`) with CRDS-style names,
  different for each detector, in ``references/jwst/nircam/``;
* ``config/jwst/server_config``: what the client would have saved from its last server contact.

The client is configured "serverless" (its JSON-RPC proxy refuses to call out), computes the
best references locally (``CRDS_MODE=local``) and finds every file already cached, so it never
downloads. On top of that a socket guard records (and refuses) any connection to a
non-loopback address and any host-name resolution, and every test asserts that nothing was
recorded: the client swallows network errors and falls back to the cache, so a refusal alone
would not show an attempt.

The crds client keeps its configuration in module state (server URL, cached function results,
reference sub-folder mode): the ``offline_crds`` fixture resets it on entry and on exit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import jwst_reference_files as J
from mirage_data.calibration.reference_files import (
    REFTYPES,
    CalibrationError,
    crds_references,
    read_calibration,
    resolve_calibration,
)
from mirage_data.darks.linearize import linearize_dark

CONTEXT = "jwst_9000.pmap"
OTHER_CONTEXT = "jwst_9001.pmap"  # same rules except SUPERBIAS
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"

#: CRDS serial numbers of the reference files of each detector with rules.
SERIAL = {"NRCA1": "9001", "NRCB2": "9002"}
LATER_SUPERBIAS = "9003"  # NRCA1 superbias used after 2017-01-01 (and always in OTHER_CONTEXT)
DARK_DATE = "2016-01-09"


def crds_name(reftype: str, serial: str) -> str:
    return f"jwst_nircam_{reftype}_{serial}.fits"


# ---------------------------------------------------------------------------------------------
# The local CRDS cache


def _write_mapping(folder: Path, name: str, text: str) -> Path:
    """Write a CRDS mapping with its real checksum (sha1 of the text without the sha1sum line)."""
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    path = folder / name
    path.write_text(text.replace("@SHA1SUM@", hashlib.sha1(body.encode("utf-8")).hexdigest()))
    return path


def _pmap(name: str, imap: str) -> str:
    return f"""header = {{
    'derived_from' : 'written by hand for mirage-data tests',
    'mapping' : 'PIPELINE',
    'name' : '{name}',
    'observatory' : 'JWST',
    'parkey' : ('META.INSTRUMENT.NAME',),
    'sha1sum' : '@SHA1SUM@',
}}

selector = {{
    'NIRCAM' : '{imap}',
}}
"""


def _imap(name: str, rmaps: dict[str, str]) -> str:
    rows = "".join(f"    '{t}' : '{rmaps[t]}',\n" for t in sorted(rmaps))
    return f"""header = {{
    'derived_from' : 'written by hand for mirage-data tests',
    'instrument' : 'NIRCAM',
    'mapping' : 'INSTRUMENT',
    'name' : '{name}',
    'observatory' : 'JWST',
    'parkey' : ('META.EXPOSURE.TYPE',),
    'sha1sum' : '@SHA1SUM@',
}}

selector = {{
{rows}}}
"""


def _rmap(name: str, reftype: str, useafters: dict[str, dict[str, str]], not_applicable=()) -> str:
    """An rmap: Match on DETECTOR, then UseAfter on DATE/TIME; *not_applicable* detectors get N/A."""
    rows = ""
    for detector, dated in sorted(useafters.items()):
        rows += f"    '{detector}' : UseAfter({{\n"
        rows += "".join(f"        '{when}' : '{file}',\n" for when, file in sorted(dated.items()))
        rows += "    }),\n"
    rows += "".join(f"    '{detector}' : 'N/A',\n" for detector in not_applicable)
    return f"""header = {{
    'classes' : ('Match', 'UseAfter'),
    'derived_from' : 'written by hand for mirage-data tests',
    'filekind' : '{reftype.upper()}',
    'instrument' : 'NIRCAM',
    'mapping' : 'REFERENCE',
    'name' : '{name}',
    'observatory' : 'JWST',
    'parkey' : (('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
    'sha1sum' : '@SHA1SUM@',
}}

selector = Match({{
{rows}}})
"""


@dataclass
class CrdsCache:
    root: Path
    references: Path

    def ref(self, reftype: str, serial: str) -> Path:
        return self.references / crds_name(reftype, serial)


@pytest.fixture(scope="module")
def crds_cache(tmp_path_factory) -> CrdsCache:
    root = tmp_path_factory.mktemp("crds_cache")
    mappings = root / "mappings" / "jwst"
    references = root / "references" / "jwst" / "nircam"
    config = root / "config" / "jwst"
    for folder in (mappings, references, config):
        folder.mkdir(parents=True)

    # rules
    early = "2015-01-01 00:00:00"
    rmaps = {}
    for t in REFTYPES:
        dated = {det: {early: crds_name(t, serial)} for det, serial in SERIAL.items()}
        if t == "superbias":
            dated["NRCA1"]["2017-01-01 00:00:00"] = crds_name(t, LATER_SUPERBIAS)
        rmaps[t] = f"jwst_nircam_{t}_9000.rmap"
        _write_mapping(mappings, rmaps[t], _rmap(rmaps[t], t, dated, not_applicable=("NRCB4",)))
    _write_mapping(mappings, "jwst_nircam_9000.imap", _imap("jwst_nircam_9000.imap", rmaps))
    _write_mapping(mappings, CONTEXT, _pmap(CONTEXT, "jwst_nircam_9000.imap"))
    other = dict(rmaps, superbias="jwst_nircam_superbias_9001.rmap")
    dated = {
        "NRCA1": {early: crds_name("superbias", LATER_SUPERBIAS)},
        "NRCB2": {early: crds_name("superbias", "9002")},
    }
    _write_mapping(mappings, other["superbias"], _rmap(other["superbias"], "superbias", dated))
    _write_mapping(mappings, "jwst_nircam_9001.imap", _imap("jwst_nircam_9001.imap", other))
    _write_mapping(mappings, OTHER_CONTEXT, _pmap(OTHER_CONTEXT, "jwst_nircam_9001.imap"))

    # reference files: a full synthetic set per detector (content differs between detectors)
    for det, serial in SERIAL.items():
        bias, bias_dq = J.make_superbias_dq(J.make_superbias(det, seed=int(serial)))
        coeffs, lin_dq = J.make_linearity(ncoeffs=3, seed=int(serial))
        J.write_mask(references / crds_name("mask", serial), det)
        J.write_saturation(references / crds_name("saturation", serial), det, *J.make_saturation(seed=int(serial)))
        J.write_superbias(references / crds_name("superbias", serial), det, bias, bias_dq)
        J.write_linearity(references / crds_name("linearity", serial), det, coeffs, lin_dq)
    later = J.make_superbias("NRCA1", seed=99) + 25
    J.write_superbias(references / crds_name("superbias", LATER_SUPERBIAS), "NRCA1", *J.make_superbias_dq(later))

    # what the client keeps from its last server contact (read instead of asking a server)
    config = J.write_crds_server_config(root, CONTEXT)
    (config / "ref_cache_subdir_mode").write_text("instrument")  # references/jwst/<instrument>/
    return CrdsCache(root, references)


# ---------------------------------------------------------------------------------------------
# Offline configuration of the real client, and a guard against network use


class NetworkAttempt(OSError):
    """Raised by the socket guard (an OSError, as on a machine without network)."""


def _is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_ip(host) -> bool:
    try:
        ipaddress.ip_address(str(host.decode() if isinstance(host, bytes) else host).split("%")[0])
        return True
    except ValueError:
        return False


@pytest.fixture
def network_guard(monkeypatch) -> list:
    """Refuse and record connections to non-loopback addresses and host-name look-ups."""
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(self, address, what):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append((what, address))
            raise NetworkAttempt(f"test guard: no network ({what} to {address!r})")

    def connect(self, address):
        check(self, address, "connect")
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self, address, "connect_ex")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host) and not _is_ip(host):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no name look-ups ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def crds_state():
    """Clear the crds client's cached results before and after a test (module state)."""
    from crds.core import utils

    utils.clear_function_caches()
    yield
    utils.clear_function_caches()  # nothing of the test's cache survives into other tests


def configure_crds(monkeypatch, cache_root: Path, server_url: str = SERVERLESS_URL) -> None:
    """Point the real crds client at the local cache *cache_root* and at *server_url*."""
    import crds
    from crds.client import api
    from crds.core import config, utils

    # settings that would take precedence over CRDS_PATH or send the client elsewhere (crds
    # itself writes its defaults into os.environ on import, so CRDS_* is not simply cleared)
    for name in ("CRDS_PATH_SINGLE", "CRDS_READONLY_CACHE") + tuple(
        f"CRDS_{kind}PATH{single}" for kind in ("MAP", "REF", "CFG", "PICKLE") for single in ("", "_SINGLE")
    ):
        monkeypatch.delenv(name, raising=False)
    environment = {
        "CRDS_PATH": str(cache_root),
        "CRDS_SERVER_URL": server_url,  # "serverless": the client's RPC proxy never calls out
        "CRDS_MODE": "local",  # best references computed here from the cached rules
        "CRDS_CONTEXT": CONTEXT,
        "CRDS_OBSERVATORY": "jwst",
        # no S3 / URI downloads, checksums of the rules checked (the default)
        "CRDS_CONFIG_URI": "none",
        "CRDS_MAPPING_URI": "none",
        "CRDS_REFERENCE_URI": "none",
        "CRDS_PICKLE_URI": "none",
        "CRDS_S3_ENABLED": "false",
        "CRDS_S3_RETURN_URI": "false",
        "CRDS_IGNORE_MAPPING_CHECKSUM": "false",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # module state of the client: server URL (read at import), cached results, cache layout
    monkeypatch.setattr(api, "URL", api.URL)
    monkeypatch.setattr(api, "S", api.S)
    api.set_crds_server(server_url)
    monkeypatch.setattr(config, "CRDS_REF_SUBDIR_MODE", "None")
    monkeypatch.setattr(config, "_CRDS_CACHE_READONLY", False)
    utils.clear_function_caches()
    assert crds.getreferences is crds.core.heavy_client.getreferences, "crds.getreferences is not the real client"


@pytest.fixture
def offline_crds(crds_cache, network_guard, crds_state, monkeypatch):
    """The real crds client, serverless, using only `crds_cache`; yields the guard's record."""
    configure_crds(monkeypatch, crds_cache.root)
    yield network_guard
    assert network_guard == [], f"the CRDS look-ups tried the network: {network_guard}"


def dark_header(detector: str, date: str = DARK_DATE) -> dict:
    """Primary-header keywords of a full-frame NIRCam raw dark (as `crds_parameters` reads them)."""
    return {
        "TELESCOP": "JWST",
        "INSTRUME": "NIRCAM",
        "DETECTOR": detector,
        "CHANNEL": "LONG" if detector.endswith("LONG") else "SHORT",
        "MODULE": detector[3],
        "EXP_TYPE": "NRC_DARK",
        "READPATT": "RAPID",
        "NGROUPS": 2,
        "NFRAMES": 1,
        "SUBARRAY": "FULL",
        "DATE-OBS": date,
        "TIME-OBS": "00:03:58.000",
    }


# ---------------------------------------------------------------------------------------------
# Tests


def test_network_guard_refuses_outside_connections(network_guard):
    """The guard itself: outside connections and name look-ups are refused and recorded."""
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1, never routed
    with pytest.raises(OSError):
        socket.getaddrinfo("jwst-crds.stsci.edu", 443)
    assert [what for what, _ in network_guard] == ["connect", "getaddrinfo"]
    # loopback stays allowed (other tests' servers)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        socket.create_connection(server.getsockname(), timeout=1).close()
    finally:
        server.close()
    assert len(network_guard) == 2


def test_guard_sees_the_crds_client_when_it_is_given_a_server(crds_cache, network_guard, crds_state, monkeypatch):
    """Control: with a (never resolvable, RFC 2606 ``.invalid``) server URL instead of the
    serverless one, the client does try the network and the guard records it; the look-up
    still answers from the cache. So an empty record in the other tests means something."""
    configure_crds(monkeypatch, crds_cache.root, "https://jwst-crds.invalid")
    paths = crds_references(dark_header("NRCA1"), ["mask"])
    assert paths == {"mask": crds_cache.ref("mask", "9001")}
    assert ("getaddrinfo", "jwst-crds.invalid") in network_guard


def test_crds_selects_the_files_of_each_detector(offline_crds, crds_cache):
    from crds.client import api
    from crds.core import heavy_client

    found = {}
    for det, serial in SERIAL.items():
        paths = crds_references(dark_header(det))
        assert list(paths) == list(REFTYPES)
        for t in REFTYPES:
            assert paths[t] == crds_cache.ref(t, serial), (det, t, paths[t])
            h = fits.getheader(paths[t])
            assert (h["REFTYPE"], h["DETECTOR"]) == (t.upper(), det)
        found[det] = paths
    assert not set(found["NRCA1"].values()) & set(found["NRCB2"].values())

    # the observation date takes part: a later dark of NRCA1 gets the later SUPERBIAS only
    later = crds_references(dark_header("NRCA1", "2018-03-01"))
    assert later["superbias"] == crds_cache.ref("superbias", LATER_SUPERBIAS)
    assert {t: p for t, p in later.items() if t != "superbias"} == {
        t: p for t, p in found["NRCA1"].items() if t != "superbias"
    }
    # only some types asked for
    assert crds_references(dark_header("NRCB2"), ["linearity"]) == {"linearity": crds_cache.ref("linearity", "9002")}

    # it was the real client, serverless, working from the cache with our rules
    assert "serverless" in api.get_crds_server()
    info = heavy_client.get_config_info("jwst")
    assert info.connected is False and info.last_synced == "never (written by a test)"
    assert heavy_client.get_processing_mode("jwst") == ("local", CONTEXT)
    assert offline_crds == []


def test_resolve_calibration_through_crds(offline_crds, crds_cache, tmp_path):
    # everything from CRDS; names recorded as crds://<file>
    paths = resolve_calibration(dark_header("NRCB2"))
    for t in REFTYPES:
        assert paths.path(t) == crds_cache.ref(t, "9002")
        assert paths.name(t) == "crds://" + crds_name(t, "9002")
    cal = read_calibration(paths, detector="NRCB2", instrument="NIRCAM")  # the files fit the dark
    assert cal.header_cards()["R_LINEAR"] == "crds://" + crds_name("linearity", "9002")

    # a file given by the caller wins; CRDS supplies only the others
    own_mask = tmp_path / "my_mask.fits"
    shutil.copy(crds_cache.ref("mask", "9002"), own_mask)
    mixed = resolve_calibration(dark_header("NRCB2"), mask=own_mask)
    assert mixed.mask == own_mask and mixed.name("mask") == "my_mask.fits"
    assert set(mixed.names) == {"saturation", "superbias", "linearity"}
    assert mixed.saturation == crds_cache.ref("saturation", "9002")

    # a context given by the caller is used (over CRDS_CONTEXT)
    other = resolve_calibration(dark_header("NRCA1"), crds_context=OTHER_CONTEXT)
    assert other.superbias == crds_cache.ref("superbias", LATER_SUPERBIAS)
    assert other.mask == crds_cache.ref("mask", "9001")
    assert resolve_calibration(dark_header("NRCA1")).superbias == crds_cache.ref("superbias", "9001")
    assert offline_crds == []


def test_detector_without_files_gives_a_clear_error(offline_crds):
    # no rule at all for NRCA3
    with pytest.raises(CalibrationError, match=r"CRDS could not give reference files for NRCA3: .*NRCA3") as err:
        crds_references(dark_header("NRCA3"))
    assert "--calibration-dir" in str(err.value)
    with pytest.raises(CalibrationError, match="CRDS could not give reference files for NRCA3"):
        resolve_calibration(dark_header("NRCA3"))
    # rules that say N/A for NRCB4
    with pytest.raises(CalibrationError, match=r"CRDS has no MASK reference file for this dark \(NOT FOUND n/a\)"):
        crds_references(dark_header("NRCB4"))
    with pytest.raises(CalibrationError, match="CRDS has no LINEARITY reference file"):
        crds_references(dark_header("NRCB4"), ["linearity"])
    # an unknown context
    with pytest.raises(CalibrationError, match="CRDS could not give reference files for NRCA1"):
        crds_references(dark_header("NRCA1"), context="jwst_9999.pmap")
    assert offline_crds == []


def test_linearize_dark_with_crds_end_to_end(offline_crds, crds_cache, tmp_path):
    """A small full-frame NRCA1 ramp linearized with CRDS's files = with the same files given."""
    raw = J.write_raw_dark(tmp_path / "nrca1_uncal.fits", "NRCA1", ngroups=2, seed=31)
    via_crds = linearize_dark(raw, tmp_path / "via_crds.fits", use_crds=True, include_dq=True)
    given = {t: crds_cache.ref(t, "9001") for t in REFTYPES}
    direct = linearize_dark(raw, tmp_path / "direct.fits", use_crds=False, include_dq=True, **given)
    with fits.open(via_crds) as a, fits.open(direct) as b:
        for key, t in (
            ("R_MASK", "mask"),
            ("R_SATURA", "saturation"),
            ("R_SUPERB", "superbias"),
            ("R_LINEAR", "linearity"),
        ):
            assert a[0].header[key] == "crds://" + crds_name(t, "9001")
            assert b[0].header[key] == crds_name(t, "9001")
        for ext in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX", "PIXELDQ", "GROUPDQ"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=ext)
        assert np.isfinite(a["SCI"].data[:, :, 4:-4, 4:-4]).mean() > 0.99
    assert offline_crds == []
