"""Benchmarks: `make bench` runs them all; see docs/performance.md."""
