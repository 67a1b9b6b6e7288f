"""Offline stand-ins for the real collection: a sample collection with the real paths, names
and formats (``sample``), and a plain static HTTP server with Range and ETag (``server``)
that the demo uses. Test machinery (injected failures, request logs, serving from another
process) lives in ``tests/support``, built on the server's handler hooks.

May import ``collection`` and ``io``.
"""
