"""The read layer: open a cache (``cache.open``), its statistics, figures (``plots``, matplotlib only when
drawing) and leakage report. Imports only the analysis and core layers: no joblib, PIL or decoders."""
