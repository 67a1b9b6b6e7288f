"""What is on disk: state folders, safe unpacking and staging, the inventory, and
status/verify (repair itself is a download: ``download.api.repair_install``).

May import ``collection``, ``io`` and the top-level helpers, never ``download``.
"""
