"""Every script imports this first (`from _bootstrap import ROOT`): it puts the checkout's root on
sys.path, so `python scripts/x.py` (whose sys.path starts with scripts/) imports this checkout's
cifar_core, as `python -m cifar_core` does from the root. The scripts import the package only,
never the tests: what they share with the tests lives in `cifar_core.testing`."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
