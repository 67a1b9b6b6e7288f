"""The Mirage reference collection: what files exist, which a user selects, and where they go.

``catalog`` (the packaged list of files), ``selection`` (the seed's options), ``layout``
(Mirage's folders and globs below ``MIRAGE_DATA``). Imports only the standard library and ``io``.
"""
