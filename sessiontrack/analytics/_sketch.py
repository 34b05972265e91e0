"""A DDSketch-style logarithmic mapping: times and durations as additive bin counts.

A value ``x`` (milliseconds) falls in bin ``ceil(log(x) / log(GAMMA))`` with
``GAMMA = (1 + ALPHA) / (1 - ALPHA)``; the bin's representative ``2 * GAMMA**i / (GAMMA + 1)``
is within ``ALPHA`` (2 %) of every value in it. Values below :data:`MIN_VALUE` (negative
ones included) go to :data:`ZERO_BIN`, whose value is 0.0. Bin counts add up across
batches, buckets and versions, so the rollup tables keep counts and any percentile is read
back from their sums.

Percentiles are by nearest rank: the ``k``-th smallest of ``n`` values with
``k = ceil(q * n)`` (1-based, at least 1; see :func:`nearest_rank`). The reported value is
``value_of(bin_of(v))`` for the exact nearest-rank value ``v``, so anyone holding the raw
values can compute the same figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

ALPHA: Final = 0.02
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
MIN_VALUE: Final = 0.01
"""Values (ms) below this go to :data:`ZERO_BIN`."""
ZERO_BIN: Final = -32768
"""The bin of values below :data:`MIN_VALUE`; sorts below every other bin."""
_LOG_GAMMA: Final = math.log(GAMMA)


def bin_of(ms: float) -> int:
    """The bin of a value in milliseconds."""
    if not ms >= MIN_VALUE:  # also NaN
        return ZERO_BIN
    return math.ceil(math.log(ms) / _LOG_GAMMA)


def value_of(bin: int) -> float:
    """The representative value of a bin (0.0 for :data:`ZERO_BIN`)."""
    if bin == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**bin / (GAMMA + 1)


def nearest_rank(n: int, q: float) -> int:
    """The 1-based rank of the ``q`` quantile of ``n`` values: ``ceil(q * n)``, at least 1.

    The product is nudged down by 1e-9 first so that binary rounding (``0.07 * 100`` is
    ``7.000000000000001``) does not move the rank up by one.
    """
    return min(n, max(1, math.ceil(q * n - 1e-9)))


def percentile(bins: Mapping[int, int], q: float, *, exact: bool = False) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of the values counted in ``bins``
    (bin → count), as the bin's representative; ``None`` when nothing is counted.

    With ``exact``, the bins are the values themselves (message counts) and the bin is
    returned as a float.
    """
    n = sum(c for c in bins.values() if c > 0)
    if n <= 0:
        return None
    k = nearest_rank(n, q)
    seen = 0
    for b in sorted(bins):
        c = bins[b]
        if c <= 0:
            continue
        seen += c
        if seen >= k:
            return float(b) if exact else value_of(b)
    raise AssertionError("unreachable: k <= n")  # pragma: no cover


__all__ = [
    "ALPHA",
    "GAMMA",
    "MIN_VALUE",
    "ZERO_BIN",
    "bin_of",
    "nearest_rank",
    "percentile",
    "value_of",
]
