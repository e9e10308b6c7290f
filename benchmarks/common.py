"""What every benchmark script shares: where the shared evaluation data lives."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The data folder beside the checkout, or wherever SRGRPO_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("SRGRPO_SHARED_DATA", REPO.parent / "shared" / "data"))
REWARDBENCH_OFFLINE = SHARED_DATA / "preference" / "rewardbench_offline.jsonl"
