"""Reading the status history (read-only) and weighting its samples over a period.

The history is written by `kloudctl status` (schema in `kloudctl/status/history.py`); this
module only reads it, through a `mode=ro` connection, so a report never changes it and
never waits for a writer (WAL readers do not block).

Weighting: each sample stands for the time until the next sample of its cabinet, capped at
twice the usual interval between runs (the median gap), so a cron that stopped is a gap of
unknown time, never uptime. The pieces are cut to the period [start, end).
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any

from kloudctl.status.history import read_samples

#: Assumed run interval when the history holds a single sample of the cabinet.
DEFAULT_INTERVAL_SECONDS = 3600.0


#: The one reader of the status history (kloudctl.status.history).
read = read_samples


@dataclass(frozen=True)
class Piece:
    """The part of the period one sample stands for."""

    sample: dict[str, Any]
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def cap_seconds(samples: list[dict[str, Any]]) -> float:
    """How long one sample may stand for: twice the median gap between runs."""
    times = [s["taken_at"] for s in samples]
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return 2 * (statistics.median(gaps) if gaps else DEFAULT_INTERVAL_SECONDS)


def pieces(samples: list[dict[str, Any]], start: float, end: float) -> list[Piece]:
    """Each sample's share of [start, end) (one cabinet's samples, oldest first)."""
    cap = cap_seconds(samples)
    found = []
    for i, s in enumerate(samples):
        until = s["taken_at"] + cap
        if i + 1 < len(samples):
            until = min(until, samples[i + 1]["taken_at"])
        a, b = max(s["taken_at"], start), min(until, end)
        if b > a:
            found.append(Piece(s, a, b))
    return found


def overlap(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    """Seconds of [a, b) inside any of the windows (which may overlap each other)."""
    cuts = sorted((max(a, ws), min(b, we)) for ws, we in windows if we > a and ws < b)
    total, reach = 0.0, a
    for ws, we in cuts:
        ws = max(ws, reach)
        if we > ws:
            total += we - ws
            reach = we
    return total
