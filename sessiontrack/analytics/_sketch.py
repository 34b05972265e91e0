"""SCAFFOLD (reads): a stand-in for `rollup`'s DDSketch mapping, same names as the brief."""

from __future__ import annotations

import math

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_MS = 0.01
ZERO_BIN = -(2**31)


def bin_of(ms: float) -> int:
    if ms < MIN_MS:
        return ZERO_BIN
    return math.ceil(math.log(ms) / _LOG_GAMMA)


def value_of(b: int) -> float:
    if b == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**b / (GAMMA + 1)


def percentile(bins: dict[int, int], q: float) -> float | None:
    n = sum(bins.values())
    if n == 0:
        return None
    k = max(1, math.ceil(q * n))
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= k:
            return value_of(b)
    raise AssertionError("unreachable")
