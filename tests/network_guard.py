"""A process-wide guard against network use in tests, installed by the root ``conftest.py``
before anything else is imported (some astronomy packages reach the network on import).

Connections to non-loopback addresses and look-ups of non-loopback host names fail (as on a
machine without network: ``OSError`` / ``socket.gaierror``) and are recorded in `attempts`,
so a test can assert that nothing tried (clients that swallow network errors would otherwise
hide an attempt).
"""

from __future__ import annotations

import ipaddress
import socket

attempts: list[tuple[str, object]] = []
_installed = False


def _loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost.localdomain", ""):
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


def install() -> None:
    """Wrap ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def check(sock, address, what):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            attempts.append((what, address))
            raise ConnectionRefusedError(f"network guard: no network in tests ({what} to {address!r})")

    def connect(self, address):
        check(self, address, "connect")
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self, address, "connect_ex")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host) and not _is_ip(host):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: no name look-ups in tests ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
