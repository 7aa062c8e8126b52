"""Analyses of stored per-image columns, below both the build and the read side so that either may use them:
the near-duplicate search (the build's ``--resplit`` and ``--drop-duplicates``, ``Cache.leakage``) and the
leakage report between splits (``Cache.leakage``, ``show stats``, ``verify``)."""
