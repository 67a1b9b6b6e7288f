"""Fixtures shared by the tests (``tests/``) and the API doctests (``src/mirage_data``).

The doctests of the public API run for real: a doctest whose examples mention ``server_url``
gets, in its namespace, the sample collection served on loopback by the package's static
server (``server_url``, ``sample_catalog``: the collection's ``catalog.tsv``), and runs in a
fresh empty folder of its own (the current directory), so that examples can use plain
relative paths such as ``"reffiles"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "tests"))
import network_guard  # noqa: E402  (before any other import: no test reaches the network)

network_guard.install()

import pytest  # noqa: E402

from mirage_data.testing.sample import make_sample_collection  # noqa: E402
from mirage_data.testing.server import CollectionServer  # noqa: E402

#: Names a doctest uses to ask for the served sample collection.
_SAMPLE_NAMES = ("server_url", "sample_catalog")


@pytest.fixture(scope="session")
def sample_collection(tmp_path_factory):
    """(folder, catalog) of the sample collection, generated once for the session."""
    root = tmp_path_factory.mktemp("sample") / "sample_collection"
    return root, make_sample_collection(root)


@pytest.fixture(scope="session")
def _static_sample_server(sample_collection):
    root, _ = sample_collection
    with CollectionServer(root) as server:
        yield server


def _wants_sample(item) -> bool:
    examples = getattr(getattr(item, "dtest", None), "examples", ())
    return any(name in example.source for example in examples for name in _SAMPLE_NAMES)


@pytest.fixture(autouse=True)
def _doctest_sample_namespace(request):
    """For doctests that use ``server_url``: the served sample collection and a fresh folder."""
    if not _wants_sample(request.node):
        yield
        return
    server = request.getfixturevalue("_static_sample_server")
    namespace = request.getfixturevalue("doctest_namespace")
    namespace["server_url"] = server.url
    namespace["sample_catalog"] = str(server.root / "catalog.tsv")
    request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))
    yield
