"""Darks for Mirage: open a raw dark (raw), linearize one (linearize), linearize many and
record them (batch); Mirage's prepared dark for an exposure (prep: cropped to its aperture
(apertures), in its readout pattern (readout), split into Mirage's segments (segments)), and for
a whole program with a yaml -> darks map (programs).

May import ``ramp``, ``calibration``, ``io``, ``collection``, ``install`` and ``batch``
(``install`` and ``batch`` only in the parent process's modules, ``batch.py`` and
``programs.py``: worker tasks import ``linearize`` or ``prep`` alone).
"""
