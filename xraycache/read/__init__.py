"""The read layer: open a cache (``cache.open``), turn its pixels and labels into training arrays
(``arrays``), its statistics (``stats``), figures (``figures``, matplotlib only when drawing), the HTML
report (``html_report``), exports (``export``) and leakage report. Imports only the analysis and core
layers: no joblib, PIL or decoders."""
