"""The one retry helper: bounded, paused, and it lets other failures through at once."""

from __future__ import annotations

import pytest

from kloudctl.retry import Backoff, retrying


class Busy(Exception):
    pass


def test_pauses_double_up_to_the_maximum() -> None:
    assert list(Backoff(attempts=6, first=0.5, maximum=3).pauses()) == [0.5, 1, 2, 3, 3]
    assert list(Backoff(attempts=1).pauses()) == []


def test_retries_until_success_noting_each_retry() -> None:
    answers = [Busy(), Busy(), "done"]
    slept: list[float] = []
    noted: list[float] = []

    def action() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = retrying(
        action,
        retry_if=lambda exc: isinstance(exc, Busy),
        pauses=Backoff(attempts=5, first=1, maximum=10),
        before_retry=lambda _exc, pause: noted.append(pause),
        sleep=slept.append,
    )
    assert result == "done"
    assert slept == noted == [1, 2]


def test_the_last_failure_goes_through_when_pauses_run_out() -> None:
    calls = 0

    def action() -> None:
        nonlocal calls
        calls += 1
        raise Busy(calls)

    with pytest.raises(Busy, match="3"):
        retrying(action, retry_if=lambda _e: True, pauses=[0, 0], sleep=lambda _s: None)
    assert calls == 3


def test_a_failure_not_to_retry_goes_through_at_once() -> None:
    calls = 0

    def action() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    with pytest.raises(ValueError):
        retrying(action, retry_if=lambda e: isinstance(e, Busy), pauses=[0] * 5)
    assert calls == 1


def test_no_pause_ends_past_the_deadline() -> None:
    now = [100.0]
    calls = 0

    def action() -> None:
        nonlocal calls
        calls += 1
        raise Busy(calls)

    def sleep(pause: float) -> None:
        now[0] += pause

    # Pauses of 1, 2, 4: the third would end at 107, past the deadline of 105.
    with pytest.raises(Busy, match="3"):
        retrying(
            action,
            retry_if=lambda _e: True,
            pauses=Backoff(attempts=8, first=1, maximum=10),
            sleep=sleep,
            deadline=105.0,
            clock=lambda: now[0],
        )
    assert calls == 3
    assert now[0] == 103.0
