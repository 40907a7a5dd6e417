"""Benchmarks: `make bench` (full sizes) and `make bench-quick`; see BENCHMARKS.md."""
