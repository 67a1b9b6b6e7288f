"""The ``mirage-data`` command: a thin click layer over the Python API.

``main`` holds the group and what commands share; ``download``, ``install`` and ``darks`` hold
the commands of each concern. Heavy subpackages are imported inside the commands that need
them, so that e.g. ``mirage-data linearize`` never loads the HTTP stack.
"""

from . import darks, download, exposures, install  # noqa: F401  (register the commands)
from .main import main

__all__ = ["main"]
