"""Sizes and durations in human units (decimal: 1 GB = 10**9 bytes, as Mirage publishes them)."""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_size(n_bytes: float) -> str:
    """Format a byte count in decimal units with three significant figures.

    >>> format_size(504_840_000_000)
    '505 GB'
    >>> format_size(1_580_000_000), format_size(999), format_size(0)
    ('1.58 GB', '999 B', '0 B')
    """
    value = float(n_bytes)
    for unit in _UNITS:
        if abs(value) < 999.5 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if abs(value) >= 1 else f"{value:.2f} {unit}"
        value /= 1000.0
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """Format a duration as ``1h02m``, ``3m05s`` or ``4.2s``.

    >>> format_duration(3725), format_duration(185), format_duration(4.2)
    ('1h02m', '3m05s', '4.2s')
    """
    if seconds >= 3600:
        h, rest = divmod(int(seconds), 3600)
        return f"{h}h{rest // 60:02d}m"
    if seconds >= 60:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s:02d}s"
    return f"{seconds:.1f}s"
