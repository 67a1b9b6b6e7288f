"""The JWST pipeline's ramp steps as plain numpy functions, one step per module (as stcal):
dq_init, saturation, superbias, refpix, linearity, and the chain that runs them.

Arrays in, arrays out: imports numpy only; no files, no FITS, no thread pools of its own.
"""
