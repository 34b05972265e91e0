"""Shared helpers of the example app's tests (tests/test_example_*.py)."""
