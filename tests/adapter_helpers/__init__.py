"""Helpers for the adapters' tests and benchmarks: the engines' fake outside worlds."""
