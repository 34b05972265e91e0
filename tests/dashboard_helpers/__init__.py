"""Helpers for the browser tests of the dashboard (tests/test_dashboard.py)."""
