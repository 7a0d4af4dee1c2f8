"""The repository root on ``sys.path``, so ``.venv/bin/pytest tests/e2e/...`` imports ``tests.*`` helpers
as ``python -m pytest`` (what ``make test`` runs) already does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
