"""Analyses of stored per-image columns (leakage between splits), below both the build and the read side
so that either may use them; today the read side does (``Cache.leakage``)."""
