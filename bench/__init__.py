"""Benchmarks of reconciler against the ARM sandbox, run in its own process: `python -m bench`.

Not part of the test suite: nothing here asserts a duration. See docs/BENCHMARKS.md for the
figures, the formulas of the bounds and the last results.
"""
