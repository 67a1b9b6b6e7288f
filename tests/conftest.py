"""Shared fixtures: the sample collection (made once per session) and a loopback server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' helper modules

from mirage_data.testing.sample import make_sample_collection  # noqa: E402
from mirage_data.testing.server import CollectionServer  # noqa: E402


@pytest.fixture(scope="session")
def sample_collection(tmp_path_factory):
    """(folder, catalog) of the sample collection, generated once for the session."""
    root = tmp_path_factory.mktemp("sample") / "sample_collection"
    return root, make_sample_collection(root)


@pytest.fixture
def sample_server(sample_collection):
    """A loopback HTTP server serving the sample collection (fresh statistics per test)."""
    root, catalog = sample_collection
    with CollectionServer(root) as server:
        yield server, catalog
