"""Benchmarks: `python -m benchmarks cpu | gpu | report | load` (see __main__.py), written to docs/BENCHMARKS.md."""
