"""citybus's benchmarks: bounded, reproducible runs that write their figures to ``docs/benchmarks.md``.

Each benchmark is a module run from the repository root (``python -m bench.replay``); with ``--smoke``
it shrinks to a few seconds so CI can check that it still completes. Numbers live in the report,
never in test assertions.
"""
