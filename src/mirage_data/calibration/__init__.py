"""JWST calibration reference files (mask, saturation, superbias, linearity): reading and
checking them, finding them in a folder or through CRDS.

May import ``io`` and ``collection``; returns plain numpy arrays for ``ramp``.
"""
