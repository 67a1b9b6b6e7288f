"""Test machinery that does not ship with the package.

``faulty_server`` builds on the product's static loopback server
(:mod:`mirage_data.testing.server`) through its handler hooks and adds what only tests and
benchmarks need: injected faults, a request log and byte counts, first-byte latency, a
server without range support, HTTPS, and serving from a process of its own.

Import it as ``from support.faulty_server import ...``: ``tests/conftest.py`` puts ``tests/``
on ``sys.path`` (the benchmarks do the same themselves).
"""
