"""Benchmarks: `python -m rwkv_app.bench cpu | gpu | report | load` (see __main__.py), written to docs/BENCHMARKS.md."""
