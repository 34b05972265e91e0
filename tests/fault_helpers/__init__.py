"""Helpers of the fault-injection suite (tests/test_faults.py, benchmarks/bench_faults.py)."""
