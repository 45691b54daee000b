"""Business hours: how much of a span a team is open, and when N open seconds run out.

A response target such as "e-mail answered within 4 hours" is usually meant in the
team's opening hours, as helpdesk SLA engines (Zendesk, Jira Service Management,
Freshdesk) count it: a message received Friday 16:00, with hours 09:00-17:00 on
weekdays, is due Monday 11:00. :class:`BusinessCalendar` turns such targets into
instants (:meth:`~BusinessCalendar.add_business_seconds`) and measures spans
(:meth:`~BusinessCalendar.business_seconds_between`).

Opening hours are wall-clock times in the calendar's IANA zone, so a day on which the
clocks change is an hour longer or shorter if it is open across the change. A boundary
that falls in a skipped hour (spring forward) moves to the end of the gap; one that
falls in a repeated hour (fall back) means its first occurrence. Holidays close a
whole local date. Instants are Unix epoch floats, like every time in the core.

Each date's open intervals are computed once, as epoch floats, and kept in a small LRU;
the common case (start inside today's hours, result the same day) is a range check
and a few comparisons. Long spans skip whole ordinary weeks arithmetically.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 86_400
WEEK = 7 * DAY
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A result further away than this is a misconfiguration (or a typo'd target), not a
# deadline anyone waits for; refusing it bounds every loop below.
MAX_SPAN_DAYS = 100 * 366

Interval = tuple[int, int]  # opening and closing time, seconds after local midnight


class CalendarError(ValueError):
    """A calendar that cannot be used as given; the message says what to change."""


def clock(seconds: int) -> str:
    """``32400`` -> ``"09:00"``; ``86400`` -> ``"24:00"``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def parse_clock(text: str) -> int:
    """``"09:30"`` (or ``"09:30:15"``) as seconds after midnight; ``"24:00"`` is the day's end."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise CalendarError(f"{text!r} is not a time of day; write HH:MM, e.g. '09:00' or '17:30'")
    hours, minutes, secs = (int(p) for p in (*parts, "00")[:3])
    if minutes > 59 or secs > 59 or hours > 24 or (hours == 24 and (minutes or secs)):
        raise CalendarError(f"{text!r} is not a time of day; use 00:00 to 24:00")
    return hours * 3600 + minutes * 60 + secs


def parse_interval(text: str) -> Interval:
    """``"09:00-17:00"`` as ``(32400, 61200)``; ``"00:00-24:00"`` is the whole day."""
    start, sep, end = text.partition("-")
    if not sep:
        raise CalendarError(f"{text!r} is not an interval; write OPEN-CLOSE, e.g. '09:00-17:00'")
    opens, closes = parse_clock(start), parse_clock(end)
    if closes == opens:
        raise CalendarError(f"{text!r} is empty; an interval must end after it starts")
    if closes < opens:
        raise CalendarError(
            f"{text!r} ends before it starts; an interval that spans midnight is written as "
            f"two, '{clock(opens)}-24:00' on one day and '00:00-{clock(closes)}' on the next"
        )
    return opens, closes


def normalise_day(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """One weekday's intervals sorted, touching ones merged; overlaps are an error."""
    merged: list[Interval] = []
    for opens, closes in sorted(intervals):
        if not 0 <= opens < closes <= DAY:
            raise CalendarError(f"{clock(opens)}-{clock(closes)} is not within one day")
        if merged and opens < merged[-1][1]:
            previous = merged[-1]
            raise CalendarError(
                f"{clock(opens)}-{clock(closes)} overlaps {clock(previous[0])}-{clock(previous[1])}"
            )
        if merged and opens == merged[-1][1]:
            merged[-1] = (merged[-1][0], closes)
        else:
            merged.append((opens, closes))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class _Day:
    """One local date: its span as instants, and its open intervals as instants."""

    ordinal: int
    start: float  # local midnight (or the first instant after it, if midnight is skipped)
    end: float  # the next day's start
    intervals: tuple[tuple[float, float], ...]
    open_seconds: float


class BusinessCalendar:
    """Opening hours in one time zone, with holidays.

    ``hours`` maps a weekday (0 = Monday ... 6 = Sunday) to its open intervals in
    seconds after local midnight; a weekday not given is closed. ``holidays`` are
    local dates on which the calendar is closed all day. A calendar with no open
    time in the week is refused: nothing measured in it could ever end.
    """

    __slots__ = ("zone", "hours", "holidays", "week_seconds", "is_always_open",
                 "_holiday_ordinals", "_days", "_recent")

    def __init__(
        self,
        zone: str | ZoneInfo,
        hours: Mapping[int, Iterable[Interval]],
        holidays: Iterable[date] = (),
        cache_size: int = 512,
    ) -> None:
        self.zone = zone if isinstance(zone, ZoneInfo) else load_zone(zone)
        unknown = sorted(set(hours) - set(range(7)))
        if unknown:
            raise CalendarError(f"weekdays are 0 (Monday) to 6 (Sunday), not {unknown}")
        week: list[tuple[Interval, ...]] = []
        for weekday in range(7):
            try:
                week.append(normalise_day(hours.get(weekday, ())))
            except CalendarError as error:
                raise CalendarError(f"{WEEKDAYS[weekday]}: {error}") from None
        self.hours: tuple[tuple[Interval, ...], ...] = tuple(week)
        self.week_seconds = float(sum(c - o for day in week for o, c in day))
        if self.week_seconds <= 0:
            raise CalendarError(
                "the calendar is never open: give at least one weekday an interval such as "
                "'09:00-17:00', or use no calendar for 24/7"
            )
        self.holidays = frozenset(holidays)
        self._holiday_ordinals = sorted(day.toordinal() for day in self.holidays)
        self.is_always_open = self.week_seconds == WEEK and not self.holidays
        self._days = lru_cache(maxsize=cache_size)(self._compute_day)
        self._recent: _Day | None = None

    @classmethod
    def always_open(cls) -> "BusinessCalendar":
        """24/7: business time is plain time, and both methods are plain arithmetic."""
        return cls("UTC", {weekday: [(0, DAY)] for weekday in range(7)})

    def __repr__(self) -> str:
        if self.is_always_open:
            return "BusinessCalendar.always_open()"
        days = ", ".join(
            f"{WEEKDAYS[i]} " + " ".join(f"{clock(o)}-{clock(c)}" for o, c in day)
            for i, day in enumerate(self.hours) if day
        )
        return f"BusinessCalendar({self.zone.key!r}, {days}, {len(self.holidays)} holidays)"

    # -- the two questions -------------------------------------------------------
    def add_business_seconds(self, start: float, seconds: float) -> float:
        """The instant at which ``seconds`` of open time have passed since ``start``.

        Outside hours the clock starts at the next opening, so zero seconds from a
        closed moment is that opening. A target ending exactly at closing time ends
        then, not at the next opening.
        """
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"business seconds must be a finite number >= 0, not {seconds!r}")
        if self.is_always_open:
            return start + seconds
        day = self._day_at(start)
        remaining = seconds
        for opens, closes in day.intervals:
            if closes > start:
                begin = opens if opens > start else start
                if begin + remaining <= closes:
                    return begin + remaining
                remaining -= closes - begin
        ordinal = day.ordinal + 1
        limit = ordinal + MAX_SPAN_DAYS
        while ordinal < limit:
            if remaining > self.week_seconds and self._is_ordinary_week(ordinal):
                remaining -= self.week_seconds
                ordinal += 7
                continue
            for opens, closes in self._days(ordinal).intervals:
                if opens + remaining <= closes:
                    return opens + remaining
                remaining -= closes - opens
            ordinal += 1
        raise CalendarError(
            f"{seconds:g} business seconds from {datetime.fromtimestamp(start, self.zone):%Y-%m-%d %H:%M} "
            f"end more than {MAX_SPAN_DAYS} days later in {self!r}"
        )

    def business_seconds_between(self, start: float, end: float) -> float:
        """Open time within ``[start, end)``; 0 if ``end <= start``."""
        if end <= start:
            return 0.0
        if self.is_always_open:
            return end - start
        day = self._day_at(start)
        if end <= day.end:
            return _overlap(day.intervals, start, end)
        total = _overlap(day.intervals, start, day.end)
        last = self._day_at(end)
        ordinal = day.ordinal + 1
        while ordinal < last.ordinal:
            if ordinal + 7 <= last.ordinal and self._is_ordinary_week(ordinal):
                total += self.week_seconds
                ordinal += 7
            else:
                total += self._days(ordinal).open_seconds
                ordinal += 1
        return total + _overlap(last.intervals, last.start, end)

    def is_open(self, instant: float) -> bool:
        """Whether ``instant`` lies within opening hours."""
        if self.is_always_open:
            return True
        return any(o <= instant < c for o, c in self._day_at(instant).intervals)

    # -- dates -------------------------------------------------------------------
    def _day_at(self, instant: float) -> _Day:
        recent = self._recent
        if recent is not None and recent.start <= instant < recent.end:
            return recent
        ordinal = datetime.fromtimestamp(instant, self.zone).toordinal()
        day = self._recent = self._days(ordinal)
        return day

    def _is_ordinary_week(self, ordinal: int) -> bool:
        """The 7 days from ``ordinal`` hold exactly :attr:`week_seconds` of open time.

        True when none is a holiday and the UTC offset is the same at both ends (the
        clocks did not change in between: changes are months apart in every zone).
        """
        holidays = self._holiday_ordinals
        at = bisect.bisect_left(holidays, ordinal)
        if at < len(holidays) and holidays[at] < ordinal + 7:
            return False
        zone = self.zone
        return zone.utcoffset(datetime.fromordinal(ordinal)) == zone.utcoffset(
            datetime.fromordinal(ordinal + 7))

    def _compute_day(self, ordinal: int) -> _Day:
        today = date.fromordinal(ordinal)
        start, end = self._instant(today, 0), self._instant(today, DAY)
        intervals: list[tuple[float, float]] = []
        if today not in self.holidays:
            for opens, closes in self.hours[today.weekday()]:
                begin, finish = self._instant(today, opens), self._instant(today, closes)
                if finish > begin:  # an interval wholly in a skipped hour is gone that day
                    intervals.append((begin, finish))
        return _Day(ordinal, start, end, tuple(intervals), sum(c - o for o, c in intervals))

    def _instant(self, day: date, seconds: int) -> float:
        """The instant the wall clock first reads ``seconds`` after midnight of ``day``.

        A time in a repeated hour is its first occurrence; a time in a skipped hour is
        the end of the gap, the first instant at which the clock reads it or later.
        """
        wall = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
        instant = wall.replace(tzinfo=self.zone).timestamp()
        if datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None) == wall:
            return instant
        # In a gap: fold=1 reads the wall time with the later offset, an instant before
        # the gap; fold=0 one after it. Find the transition between them (to the second).
        low = math.floor(wall.replace(tzinfo=self.zone, fold=1).timestamp())
        high = math.ceil(instant)
        while low < high:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle + 1
        return float(high)


def _overlap(intervals: tuple[tuple[float, float], ...], start: float, end: float) -> float:
    total = 0.0
    for opens, closes in intervals:
        if closes <= start:
            continue
        if opens >= end:
            break
        total += (closes if closes < end else end) - (opens if opens > start else start)
    return total


@lru_cache(maxsize=None)
def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or an error suggesting the names it may have meant."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    import difflib
    import zoneinfo

    close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "use an IANA name such as Europe/London"
    raise CalendarError(f"unknown time zone {name!r}; {hint}")
