"""Darks for Mirage: linearize one raw dark, or many (optionally through an executor).

May import ``ramp``, ``calibration``, ``io``, ``collection`` and ``install``.
"""
