"""Getting collection files: plan, HTTP(S) and mirror transfers, partial files, the fetcher
and the public ``download_reffiles``.

May import ``collection``, ``install``, ``io`` and the top-level helpers; nothing imports it
but ``cli``, ``demo`` and the package root.
"""
