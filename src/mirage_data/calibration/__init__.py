"""JWST calibration reference files (mask, saturation, superbias, linearity): reading and
checking them, finding them in a folder or through CRDS.

May import ``io``, ``collection`` and ``ramp`` (its flag values and frame geometry); returns
plain numpy arrays for ``ramp``.
"""
