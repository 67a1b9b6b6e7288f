"""A CRDS world for tests: hand-written rules for NIRCam, NIRISS and FGS, small reference files,
and a loopback server speaking the crds client's JSON-RPC and serving files.

`write_crds_files(root)` writes ``root/mappings/jwst/*`` (two contexts: ``BUILD`` and
``LATEST``, differing in the NRCA1 gain) and ``root/references/jwst/<inst>/*``. The rules
select on META.INSTRUMENT.DETECTOR (the flat also on META.INSTRUMENT.FILTER), then on the
observation date, as the operational JWST rules do; checksums are real.

`CrdsServer(root)` answers ``get_server_info`` (latest context ``LATEST``, download metadata
with sizes and sha1), ``get_build_context`` (``BUILD``) and ``get_mapping_names``, serves the
files below ``/files/{mappings,references}/jwst/``, and records every call.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from astropy.io import fits

BUILD = "jwst_9100.pmap"
LATEST = "jwst_9101.pmap"
REFTYPES = ("mask", "superbias", "linearity", "saturation", "gain", "flat", "distortion", "ipc", "photom", "area")
DETECTORS = {
    "NIRCAM": ("NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG", "NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG"),
    "NIRISS": ("NIS",),
    "FGS": ("GUIDER1", "GUIDER2"),
}
FILTERS = {"NIRCAM": ("F200W", "F150W", "F444W", "F356W"), "NIRISS": ("CLEAR", "F277W", "GR150R"), "FGS": ("N/A", "NA")}


def ref_name(instrument: str, reftype: str, detector: str, extra: str = "") -> str:
    serial = hashlib.sha1(f"{instrument}{reftype}{detector}{extra}".encode()).hexdigest()[:6]
    suffix = ".asdf" if reftype == "distortion" else ".fits"
    return f"jwst_{instrument.lower()}_{reftype}_{serial}{suffix}"


_DATE = "('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')"


def _use_after(name: str) -> str:
    return f"UseAfter({{\n        '2014-01-01 00:00:00' : '{name}',\n    }})"


def _mapping(path: Path, text: str) -> None:
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    path.write_text(text.replace("@SHA1SUM@", hashlib.sha1(body.encode()).hexdigest()))


def _header(kind: str, name: str, parkey: str, extra: str = "") -> str:
    return f"""header = {{
    'derived_from' : 'written by hand for mirage-data tests',
{extra}    'mapping' : '{kind}',
    'name' : '{name}',
    'observatory' : 'JWST',
    'parkey' : {parkey},
    'sha1sum' : '@SHA1SUM@',
}}
"""


def _reference(path: Path, instrument: str, reftype: str, detector: str) -> None:
    if reftype == "distortion":
        path.write_text(f"#ASDF 1.0.0\n# distortion for {detector} (test)\n")
        return
    header = fits.Header([("TELESCOP", "JWST"), ("INSTRUME", instrument), ("DETECTOR", detector)])
    header["REFTYPE"] = reftype.upper()
    if reftype == "ipc":
        kernel = np.zeros((3, 3), np.float32)
        kernel[1, 1] = 1.0
        kernel[0, 1] = kernel[2, 1] = kernel[1, 0] = kernel[1, 2] = -0.006
        hdul = fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(kernel, name="SCI")])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(np.ones((4, 4), np.float32), name="SCI")])
    hdul.writeto(path)


def write_crds_files(root: Path) -> dict[str, Path]:
    """Write both contexts' rules and every reference file; returns name -> path of the references."""
    mappings = root / "mappings" / "jwst"
    mappings.mkdir(parents=True, exist_ok=True)
    refs: dict[str, Path] = {}
    for context, serial in ((BUILD, "9100"), (LATEST, "9101")):
        imaps = {}
        for instrument, detectors in DETECTORS.items():
            inst = instrument.lower()
            rmaps = {}
            for reftype in REFTYPES:
                rmap = f"jwst_{inst}_{reftype}_{serial}.rmap"
                rmaps[reftype] = rmap
                rows = ""
                if reftype == "flat":
                    parkey = f"(('META.INSTRUMENT.DETECTOR', 'META.INSTRUMENT.FILTER'), {_DATE})"
                    for det in detectors:
                        for filt in FILTERS[instrument]:
                            name = ref_name(instrument, reftype, det, filt)
                            refs[name] = (instrument, reftype, det)
                            rows += f"    ('{det}', '{filt}') : {_use_after(name)},\n"
                else:
                    parkey = f"(('META.INSTRUMENT.DETECTOR',), {_DATE})"
                    for det in detectors:
                        extra = "later" if (context == LATEST and reftype == "gain" and det == "NRCA1") else ""
                        name = ref_name(instrument, reftype, det, extra)
                        refs[name] = (instrument, reftype, det)
                        rows += f"    '{det}' : {_use_after(name)},\n"
                head = _header(
                    "REFERENCE",
                    rmap,
                    parkey,
                    f"    'classes' : ('Match', 'UseAfter'),\n    'filekind' : '{reftype.upper()}',\n"
                    f"    'instrument' : '{instrument}',\n",
                )
                _mapping(mappings / rmap, head + f"\nselector = Match({{\n{rows}}})\n")
            imap = f"jwst_{inst}_{serial}.imap"
            imaps[instrument] = imap
            rows = "".join(f"    '{t.upper()}' : '{rmaps[t]}',\n" for t in sorted(rmaps))
            head = _header("INSTRUMENT", imap, "('META.EXPOSURE.TYPE',)", f"    'instrument' : '{instrument}',\n")
            _mapping(mappings / imap, head + f"\nselector = {{\n{rows}}}\n")
        rows = "".join(f"    '{i}' : '{imaps[i]}',\n" for i in sorted(imaps))
        _mapping(
            mappings / context,
            _header("PIPELINE", context, "('META.INSTRUMENT.NAME',)") + f"\nselector = {{\n{rows}}}\n",
        )
    out = {}
    for name, (instrument, reftype, det) in refs.items():
        folder = root / "references" / "jwst" / instrument.lower()
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / name).exists():
            _reference(folder / name, instrument, reftype, det)
        out[name] = folder / name
    return out


def server_config(context: str, **more) -> dict:
    info = {
        "observatory": "jwst",
        "operational_context": context,
        "edit_context": context,
        "latest_context": context,
        "bad_files": "",
        "bad_files_list": [],
        "force_remote_mode": False,
        "crds_version": {"str": "14.0.0"},
        "reference_url": "none",
        "mapping_url": "none",
        "last_synced": "written by a test",
    }
    info.update(more)
    return info


def write_server_config(cache: Path, context: str) -> None:
    folder = cache / "config" / "jwst"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server_config").write_text(repr(server_config(context)))


class CrdsServer:
    """A loopback CRDS server over the files below *root* (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.calls: list[str] = []
        self.downloads: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> CrdsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _metadata(self) -> dict:
        meta = {}
        for p in (self.root / "references" / "jwst").rglob("*"):
            if p.is_file():
                meta[p.name] = {"size": str(p.stat().st_size), "sha1sum": hashlib.sha1(p.read_bytes()).hexdigest()}
        for p in (self.root / "mappings" / "jwst").glob("*"):
            meta[p.name] = {"size": str(p.stat().st_size), "sha1sum": hashlib.sha1(p.read_bytes()).hexdigest()}
        return meta

    def _answer(self, method: str, params):
        from crds.client.proxy import crds_encode

        self.calls.append(method)
        if method == "get_server_info":
            return server_config(
                LATEST,
                reference_url={"unchecked": {"jwst": self.url + "files/references/jwst/"}},
                mapping_url={"unchecked": {"jwst": self.url + "files/mappings/jwst/"}},
                download_metadata=crds_encode(self._metadata()),
            )
        if method == "get_build_context":
            return BUILD
        if method == "get_mapping_names":
            ctx = params[0] if isinstance(params, list) else params.get("pipeline_context")
            names, todo = set(), [ctx]
            while todo:  # the closure, read from the mapping texts
                name = todo.pop()
                if name not in names:
                    names.add(name)
                    text = (self.root / "mappings" / "jwst" / name).read_text()
                    todo += re.findall(r"'(jwst_\w+\.[ir]map)'", text)
            return sorted(names)
        raise KeyError(method)

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    reply = {"result": owner._answer(body["method"], body.get("params")), "error": None}
                except Exception as exc:
                    reply = {"result": None, "error": {"message": f"unknown or failed {body['method']}: {exc}"}}
                reply["id"] = body.get("id")
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[0] == "files":
                    kind, name = parts[1], parts[3]
                    base = owner.root / kind / "jwst"
                    hits = [base / name] + list(base.glob(f"*/{name}"))
                    hit = next((h for h in hits if h.is_file()), None)
                    if hit is not None:
                        data = hit.read_bytes()
                        owner.downloads.append(name)
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
