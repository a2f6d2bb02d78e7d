"""``hybrid-asd grid``: approach configs x machine types x seeds as one Ray task per cell, resumable,
with mean +- std tables over seeds (docs/grid.md).

``spec`` (the grid, its cells and checks), ``cell`` (one cell: the staged pipeline in a Ray worker),
``runner`` (the Ray driver: submission, retries, progress), ``summary`` (results.csv, summary.md,
cross-approach fusions per seed), ``plot`` (the figure of ``hybrid-asd report GRID_FOLDER``),
``commands`` (the CLI subcommand). Ray itself is the optional extra ``hybrid_asd[grid]`` and is
imported only when cells must run.
"""
