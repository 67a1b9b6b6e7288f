"""Running whole-file tasks (one dark, one exposure) in this process's pool or on a Dask
cluster: ``executors`` opens the executor (``--jobs``, ``--workers``, ``--scheduler``), ``run``
submits the tasks, skips finished outputs, and reports per task; ``display`` shows progress.

May import ``io`` and the top-level helpers; the tasks themselves come from ``darks`` or
``exposures``. The client side alone fetches, asks CRDS and writes the inventory: tasks only
compute and write their own outputs.
"""
