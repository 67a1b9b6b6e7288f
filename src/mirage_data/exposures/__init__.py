"""Exposures: from Mirage input yaml files to exactly the reference files they need, ready offline.

``rules`` (Mirage 2.5's own naming and matching rules, as facts), ``yaml_input`` (reading a
Mirage yaml file into an `Exposure`), ``psf`` (finding and checking gridded PSF libraries the
way Mirage does), ``bill`` (each exposure's bill of materials and the problems Mirage would hit,
identical needs resolved once), ``ipc`` (the inverted IPC kernel, a plain numpy function),
``resolved`` (writing resolved yaml copies and the offline environment lines), ``fetch``
(fetching an explicit set of collection files through the download engine) and ``prepare``
(the whole run and its report).

May import ``collection``, ``install``, ``download``, ``calibration``, ``io`` and the top-level
helpers; nothing imports it but ``cli``.
"""
