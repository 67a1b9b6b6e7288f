"""Shared fixtures: the sample collection (made once per session) and a loopback server.

``tests/`` is put on ``sys.path`` so that test modules import their helpers by plain name
(``collections_for_tests``, ``support.faulty_server``) under ``python -m pytest`` from the
repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' helper modules

from support.faulty_server import FaultyServer  # noqa: E402


@pytest.fixture
def sample_server(sample_collection):
    """A loopback server (with request log and statistics) serving the sample collection."""
    root, catalog = sample_collection
    with FaultyServer(root) as server:
        yield server, catalog
