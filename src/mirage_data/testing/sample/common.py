"""What the sample collection's dark and archive writers share: seeding, dates, safe writes."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np

from mirage_data.io.atomic import atomic_write_bytes

#: Full-frame size of the NIR detectors (pixels per side).
NPIX = 2048
#: DATE written in every sample file, so that the bytes do not depend on the day.
FIXED_DATE = "2024-01-01T00:00:00"
#: COMMENT card of every sample FITS file.
SYNTHETIC = "Synthetic sample file written by mirage-data; not real JWST data."


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends on the seed and on stable keys (never on Python's hash())."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


def write_and_hash(path: Path, data: bytes) -> tuple[int, str]:
    """Write *data* to *path* via a temporary name; return (size, sha256)."""
    atomic_write_bytes(path, data)
    return len(data), hashlib.sha256(data).hexdigest()
