"""The read layer: open a cache (``cache.open``), turn its pixels and labels into training arrays
(``arrays``), its statistics, figures (``plots``, matplotlib only when drawing), exports (``export``) and
leakage report. Imports only the analysis and core layers: no joblib, PIL or decoders."""
