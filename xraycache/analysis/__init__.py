"""Analyses of stored per-image columns that both the build and the readers use (leakage between splits)."""
