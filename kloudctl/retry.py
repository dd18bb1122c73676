"""The one retry helper: call again, after growing pauses, while the failure says to.

Every retry in kloudctl (Proxmox answers its own clients retry, restic's lock held by
another run) goes through `retrying`, so each has a bound, a backoff and a note of what
was retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all; pauses start at `first` and double up to `maximum`."""

    attempts: int = 8
    first: float = 0.2
    maximum: float = 3.0

    def pauses(self) -> Iterator[float]:
        pause = self.first
        for _ in range(self.attempts - 1):
            yield pause
            pause = min(pause * 2, self.maximum)


def retrying(
    action: Callable[[], T],
    *,
    retry_if: Callable[[Exception], bool],
    pauses: Backoff | Iterable[float],
    before_retry: Callable[[Exception, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`action()`; when it raises an exception `retry_if` accepts, pause and try again while
    pauses remain, then let the last failure through. `before_retry(exc, pause)` runs before
    each pause (to note the retry, or to clear what blocked the try). With a `deadline` (a
    `clock()` time), no pause would end past it: the last failure goes through instead, so
    a caller's time budget bounds the retries too."""
    remaining = iter(pauses.pauses() if isinstance(pauses, Backoff) else pauses)
    while True:
        try:
            return action()
        except Exception as exc:
            if not retry_if(exc):
                raise
            pause = next(remaining, None)
            if pause is None:
                raise
            if deadline is not None and clock() + pause >= deadline:
                raise
            if before_retry is not None:
                before_retry(exc, pause)
            sleep(pause)
