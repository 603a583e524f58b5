"""Benchmark harness for urbanmim (not part of the test suite).

Run ``python -m bench.run`` from the repository root; see ``bench/README.md``.
"""
