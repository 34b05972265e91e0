"""Shared helpers of the example app's tests (tests/test_example_*.py).

Importing this package puts the repository's root on ``sys.path``, so that ``examples``
(which is not part of the installed distribution) imports under a plain ``pytest`` too,
not only under ``python -m pytest``.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
