"""Benchmarks: `python3 -m bench.run [--quick]` writes docs/BENCHMARKS.md."""
