"""TLS verification (on by default) and proxies from the environment, over real sockets."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading

import pytest
import requests

from collections_for_tests import FGS_RAW, dark_bytes, gz, make_collection
from mirage_data.download.api import DownloadFailed, download_reffiles
from mirage_data.download.transfer import TransferOptions
from support.faulty_server import FaultyServer


@pytest.fixture
def tls_collection(tmp_path):
    """One dark served over HTTPS with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    raw = dark_bytes(300_000)
    catalog = make_collection(tmp_path / "remote", {FGS_RAW[0]: gz(raw)})
    with FaultyServer(tmp_path / "remote", ssl_context=context) as server:
        yield server, catalog, raw, cert


def test_tls_certificates_are_verified_by_default(tls_collection, tmp_path):
    server, catalog, raw, cert = tls_collection
    assert server.url.startswith("https://")
    kw = dict(instrument="fgs", dark_type="raw", mirror=server.url, catalog=catalog, quiet=True)
    with pytest.raises(DownloadFailed, match="TLS certificate verification failed.*REQUESTS_CA_BUNDLE"):
        download_reffiles(tmp_path / "a", **kw)
    assert not [r for r in server.requests if r.method == "GET"]  # refused before any body
    # Trusting the certificate makes the same download work.
    download_reffiles(tmp_path / "b", options=TransferOptions(verify_tls=str(cert)), **kw)
    assert (tmp_path / "b" / "mirage_data" / FGS_RAW[0][:-3]).read_bytes() == raw


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A minimal forwarding HTTP proxy: absolute-form requests, relayed with requests."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def log_message(self, *args):
        pass

    def _relay(self, method):
        type(self).seen.append(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        with requests.Session() as s:
            s.trust_env = False
            r = s.request(method, self.path, headers=headers, stream=True)
            body = b"" if method == "HEAD" else r.raw.read(decode_content=False)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("transfer-encoding", "connection"):
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._relay("GET")

    def do_HEAD(self):
        self._relay("HEAD")


def test_proxy_from_environment(tmp_path, monkeypatch):
    raw = dark_bytes(200_000, seed=4)
    catalog = make_collection(tmp_path / "remote", {FGS_RAW[1]: gz(raw)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    _Proxy.seen = []
    try:
        with FaultyServer(tmp_path / "remote") as server:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            download_reffiles(
                tmp_path, "fgs", dark_type="raw", mirror=server.url, catalog=catalog, quiet=True, connections=1
            )
    finally:
        proxy.shutdown()
    assert (tmp_path / "mirage_data" / FGS_RAW[1][:-3]).read_bytes() == raw
    assert any(FGS_RAW[1] in p for p in _Proxy.seen), _Proxy.seen
