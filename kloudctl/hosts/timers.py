"""The systemd OnCalendar of a cabinet's periodic timers, computed from a period in seconds.

The one computation for every role whose timer repeats at a period the fleet declares
(replication_source's run: the backup policy's interval; federation_mesh's failover backup:
the replication RPO): the inventory passes the expression, the roles only write it.

A calendar timer fires at moments of the wall clock, so it repeats at an exact period only
when the period divides the next unit up: whole minutes dividing an hour, whole hours
dividing a day, a day, a week. `00/7:00:00` fires at 0, 7, 14 and 21 h, then at 0 h: a 3 h
gap; `00/24:00:00` names an hour systemd refuses, and the timer never loads. A period is
therefore first rounded down to one of `CALENDAR_PERIODS`: a timer runs at least as often
as asked, never less (below a minute, once a minute).
"""

from __future__ import annotations

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

#: The periods (seconds) a calendar timer repeats at exactly, shortest first.
CALENDAR_PERIODS: tuple[int, ...] = (
    *(m * MINUTE for m in range(1, 60) if 60 % m == 0),
    *(h * HOUR for h in range(1, 24) if 24 % h == 0),
    DAY,
    WEEK,
)


def calendar_period(seconds: int) -> int:
    """The longest of `CALENDAR_PERIODS` not longer than `seconds` (a minute below that)."""
    return max((p for p in CALENDAR_PERIODS if p <= seconds), default=CALENDAR_PERIODS[0])


def on_calendar(seconds: int) -> str:
    """The OnCalendar expression of a timer repeating every `calendar_period(seconds)`, in
    the cabinet's local time, starting at midnight (Monday's for a week)."""
    period = calendar_period(seconds)
    named = {HOUR: "hourly", DAY: "daily", WEEK: "weekly"}
    if period in named:
        return named[period]
    if period > HOUR:
        return f"00/{period // HOUR}:00:00"
    return f"*:00/{period // MINUTE}:00"
