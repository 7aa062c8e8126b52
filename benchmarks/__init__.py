"""xraycache benchmarks: build, load, memory, fidelity and size, measured side by side and tracked.

Run ``python -m benchmarks.run`` (``--quick`` for a small smoke run); ``python -m benchmarks.readme``
regenerates the performance table of ``docs/performance.md`` from the latest line of
``benchmarks/results/history.jsonl``.
"""
