"""Darks for Mirage: open a raw dark (raw), linearize one (linearize), linearize many and
record them (batch, optionally through an executor); Mirage's prepared dark for an exposure
(prep: cropped to its aperture (apertures), in its readout pattern (readout), split into
Mirage's segments (segments)).

May import ``ramp``, ``calibration``, ``io``, ``collection`` and ``install`` (``install`` only
in ``batch``, which runs in the parent process: worker tasks import ``linearize`` alone).
"""
