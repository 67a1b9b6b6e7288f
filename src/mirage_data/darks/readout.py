"""Mirage 2.5's readout patterns, as data (its ``config/*read*pattern*`` tables).

``READ_PATTERNS[instrument][name] = (nframe, nskip, maxgroups)``: frames averaged per group,
frames skipped after them, and the most groups the pattern allows. Only the one-frame
patterns (`RAPID_PATTERNS`) can be re-averaged into other patterns; a dark in any other
pattern serves only that pattern.
"""

from __future__ import annotations

__all__ = ["READ_PATTERNS", "RAPID_PATTERNS", "ReadPattern", "read_pattern", "is_rapid"]

READ_PATTERNS: dict[str, dict[str, tuple[int, int, int]]] = {
    # mirage/config/nircam_read_pattern_definitions.list
    "nircam": {
        "RAPID": (1, 0, 108),
        "BRIGHT1": (1, 1, 10),
        "BRIGHT2": (2, 0, 10),
        "SHALLOW2": (2, 3, 10),
        "SHALLOW4": (4, 1, 10),
        "MEDIUM2": (2, 8, 10),
        "MEDIUM8": (8, 2, 10),
        "DEEP2": (2, 18, 20),
        "DEEP8": (8, 12, 20),
    },
    # mirage/config/niriss_readout_pattern.txt
    "niriss": {"NISRAPID": (1, 0, 800), "NIS": (4, 0, 27)},
    # mirage/config/guider_readout_pattern.txt
    "fgs": {"FGSRAPID": (1, 0, 800), "FGS": (4, 0, 27)},
}

#: One frame per group, nothing skipped: the patterns a dark can be re-averaged from.
RAPID_PATTERNS = frozenset({"RAPID", "NISRAPID", "FGSRAPID"})


class ReadPattern(tuple):
    """(name, nframe, nskip) of a readout pattern."""

    __slots__ = ()

    def __new__(cls, name: str, nframe: int, nskip: int):
        return super().__new__(cls, (name, int(nframe), int(nskip)))

    name = property(lambda self: self[0])
    nframe = property(lambda self: self[1])
    nskip = property(lambda self: self[2])


def read_pattern(instrument: str, name: str) -> ReadPattern:
    """The pattern *name* of *instrument* (``nircam``, ``niriss``, ``fgs``; case-insensitive).

    Raises
    ------
    ValueError
        Unknown instrument or pattern (the message lists the accepted ones).
    """
    table = READ_PATTERNS.get(str(instrument).lower())
    if table is None:
        raise ValueError(f"unknown instrument {instrument!r}; accepted: {', '.join(READ_PATTERNS)}")
    key = str(name).strip().upper()
    if key not in table:
        raise ValueError(f"unknown {instrument} readout pattern {name!r}; accepted: {', '.join(table)}")
    nframe, nskip, _ = table[key]
    return ReadPattern(key, nframe, nskip)


def is_rapid(name: str) -> bool:
    """True for the one-frame patterns (RAPID, NISRAPID, FGSRAPID)."""
    return str(name).strip().upper() in RAPID_PATTERNS
