"""Flow analytics per flow version, from the event log (see docs/analytics.md).

The writer keeps additive rollups in each batch's transaction (:mod:`._rollup`, the same
code :func:`rebuild` replays the whole log with); the read side sums them.
"""

from __future__ import annotations

from ._rebuild import rebuild
from ._service import Analytics
from ._sketch import ALPHA

__all__ = ["ALPHA", "Analytics", "rebuild"]
