"""Darks for Mirage: open a raw dark (raw), linearize one (linearize), linearize many and
record them (batch, optionally through an executor); Mirage's prepared dark for an exposure
(prep: cropped to its aperture (apertures), in its readout pattern (readout), split into
Mirage's segments (segments)).

May import ``ramp``, ``calibration``, ``io``, ``collection``, ``install`` and ``batch``
(``install`` and ``batch`` only in the parent process's modules, ``batch.py`` and the batch
part of ``prep.py``: worker tasks import ``linearize`` or ``prep`` alone).
"""
