"""SCAFFOLD (reads): `rollup` owns this file."""
