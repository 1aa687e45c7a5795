"""The benchmark harness: `python -m bench --help`. See BENCHMARKS.md."""
