"""Benchmarks: `python -m rwkv_app.bench cpu` (more suites join as the project grows)."""
