"""Offline stand-ins for the real collection: a sample collection with the real paths, names
and formats (``sample``), and a plain static HTTP server with Range and ETag (``server``)
that the demo and the benchmarks use. Test machinery (fault injection) lives in ``tests/``.

May import ``collection`` and ``io``.
"""
