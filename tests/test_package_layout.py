"""The package's shape (issue 7): light imports where they matter, no test machinery shipped,
modules of a readable size, and the one-way flow between subpackages."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mirage_data"
HEAVY = ("requests", "urllib3", "isal")


def _imported_modules(*args: str) -> set[str]:
    """Modules a fresh interpreter imports for *args* (``python -X importtime ARGS``)."""
    out = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=True)
    return {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    "args",
    [
        ("-c", "import mirage_data.ramp"),
        ("-c", "import mirage_data.darks.linearize, mirage_data.darks.batch"),
        ("-m", "mirage_data", "linearize", "--help"),
    ],
    ids=["ramp", "darks", "linearize-command"],
)
def test_dark_work_does_not_load_the_http_and_gzip_stack(args):
    loaded = _imported_modules(*args)
    assert "mirage_data.ramp" in loaded or "mirage_data.cli" in loaded  # the probe saw our imports
    assert not [m for m in HEAVY if m in loaded]


def test_no_fault_injection_in_the_product():
    hits = [p for p in SRC.rglob("*.py") if re.search(r"\bfault", p.read_text(), re.IGNORECASE)]
    assert hits == []


def test_top_level_holds_only_small_modules():
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert set(top) <= {"__init__.py", "__main__.py", "units.py", "progress.py", "demo.py"}


def test_long_modules_say_why_at_their_top():
    long_ones = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 600 and "Why one module" not in text[:4000]:
            long_ones.append(str(path.relative_to(SRC)))
    assert long_ones == []


# which subpackages each may import (the __init__ docstrings say the same in words)
ALLOWED = {
    "io": set(),
    "collection": {"io"},
    "ramp": set(),
    "install": {"io", "collection"},
    "download": {"io", "collection", "install"},
    "calibration": {"io", "collection", "ramp"},
    "darks": {"io", "collection", "install", "calibration", "ramp", "batch"},
    "batch": {"io"},
    "exposures": {"io", "collection", "install", "download", "calibration", "darks"},
    "testing": {"io", "collection"},
}


def _first_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("mirage_data."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mirage_data."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_data_flows_one_way(package):
    light = {"units", "progress"}  # top-level helpers any subpackage may use
    wrong = {}
    for path in (SRC / package).rglob("*.py"):
        bad = _first_party_imports(path) - ALLOWED[package] - light - {package}
        if bad:
            wrong[str(path.relative_to(SRC))] = sorted(bad)
    assert wrong == {}
