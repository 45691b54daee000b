"""The service policy: what "quick enough" and "at risk" mean, per team, channel and priority.

One TOML file (docs/policy.md; deploy/policy.example.toml) says how fast each channel
should be answered and greeted, when an open promise counts as at risk, what share of
promises and responses each team aims to get right, and in which opening hours a team's
targets run. :func:`load_policy` reads and validates it into a :class:`Policy`, whose
lookups the worker calls per event; without a file, :meth:`Policy.default` keeps the
numbers the rest of servicewatch was built with (recording.yml, settings.py).

Pure: no Kafka, no Faust. ``python -m streams.policy check FILE`` validates a file.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
import tomllib
import typing
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model, field_validator, model_validator,
)

from schemas.events import Channel, Priority, PromiseKind, TeamName
from streams.core.calendar import WEEKDAYS, BusinessCalendar, CalendarError, Interval, load_zone, parse_interval

CHANNELS = tuple(channel.value for channel in Channel)
PRIORITIES = tuple(priority.value for priority in Priority)
KINDS = tuple(kind.value for kind in PromiseKind)

# Built-in numbers, used where the file says nothing. Response targets are those the
# recording rules judge by (deploy/prometheus/rules/recording.yml: chat 1 min, phone
# 5 min, email 1 h, others 15 min); greeting targets sit on greeting-histogram bucket
# edges (streams/metrics.py) so "within target" stays an exact bucket read.
DEFAULT_RESPONSE = {"default": 900.0, "chat": 60.0, "phone": 300.0, "email": 3600.0}
DEFAULT_GREETING = {"default": 60.0, "phone": 20.0, "chat": 30.0, "email": 3600.0}
DEFAULT_AT_RISK = 900.0  # settings.py: SERVICEWATCH_AT_RISK_SECONDS
DEFAULT_OBJECTIVES = {
    "promise_on_time": 0.95,  # recording.yml: the fallback of team_objective:servicewatch_objective:ratio
    "response_within_target": 0.90,  # alerts.yml: ResponseTargetBreached tolerates 10 %
    "greeting_within_target": 0.90,
}


class PolicyError(ValueError):
    """A policy file that cannot be used; one line per problem, each naming file, key and fix."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


# -- values --------------------------------------------------------------------------
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a string such as ``"90s"``, ``"30m"``, ``"4h"``, ``"1h30m"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a duration; write seconds (90) or e.g. '90s', '30m', '4h', '1d'")
    if isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        try:
            value = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not text or "".join(n + u for n, u in parts) != text.replace(" ", ""):
                raise ValueError(
                    f"{value!r} is not a duration; write seconds (90) or e.g. '90s', '30m', '4h', "
                    f"'1d', '1h30m'"
                ) from None
            return float(sum(float(number) * _UNITS[unit] for number, unit in parts))
    if not math.isfinite(value):
        raise ValueError(f"a duration must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return float(value)


def format_duration(seconds: float) -> str:
    """``14400`` -> ``"4h"``; ``5400`` -> ``"1h30m"``; ``0.5`` -> ``"0.5s"``."""
    if seconds != int(seconds) or seconds == 0:
        return f"{seconds:g}s"
    text, rest = "", int(seconds)
    for unit in ("d", "h", "m", "s"):
        count, rest = divmod(rest, _UNITS[unit])
        text += f"{count}{unit}" if count else ""
    return text


def _parse_objective(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"an objective is a share between 0 and 1 (exclusive), e.g. 0.95; got {value!r}")
    return float(value)


def _parse_holiday(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"a holiday is a whole date such as 2025-12-25, not a time ({value})")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date; write holidays as 2025-12-25")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Objective = Annotated[float, BeforeValidator(_parse_objective)]
Holiday = Annotated[date, BeforeValidator(_parse_holiday)]


# -- the file --------------------------------------------------------------------------
class _Table(BaseModel):
    """A TOML table: unknown keys are errors (a typo must not silently mean 'not set')."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # A table that may also be written as a bare duration meaning this key.
    shorthand: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        if cls.shorthand is not None and not isinstance(data, dict):
            return {cls.shorthand: data}
        return data


def _table(name: str, keys: tuple[str, ...], value: Any, base: type[_Table] = _Table, **extra: Any):
    fields = {key: (value | None, None) for key in keys}
    return create_model(name, __base__=base, **fields, **extra)


class _DefaultedTable(_Table):
    """``response = "4h"`` is short for ``response = { default = "4h" }``."""

    shorthand: ClassVar[str | None] = "default"


# Channel and kind names come from the event schemas, so the file can name no other.
PriorityTargets = _table("PriorityTargets", CHANNELS, Duration)
Targets = _table(
    "Targets", ("default", *CHANNELS), Duration, base=_DefaultedTable,
    **{priority: (PriorityTargets | None, None) for priority in PRIORITIES},
)
AtRisk = _table("AtRisk", ("default", *KINDS), Duration, base=_DefaultedTable)
ObjectivesTable = _table("ObjectivesTable", tuple(DEFAULT_OBJECTIVES), Objective)


class CalendarTable(_Table):
    timezone: str
    hours: dict[str, list[str] | str]
    holidays: list[Holiday] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        load_zone(name)
        return name

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, hours: dict[str, list[str] | str]) -> dict[str, list[str] | str]:
        week_hours(hours)
        return hours


class TeamTable(_Table):
    calendar: str | None = None
    response: Targets | None = None
    greeting: Targets | None = None
    at_risk: AtRisk | None = None
    objectives: ObjectivesTable | None = None


class PolicyFile(_Table):
    response: Targets | None = None
    greeting: Targets | None = None
    at_risk: AtRisk | None = None
    objectives: ObjectivesTable | None = None
    calendars: dict[str, CalendarTable] = {}
    teams: dict[TeamName, TeamTable] = {}


def _weekdays(key: str) -> list[int]:
    names = {name: i for i, name in enumerate(WEEKDAYS)}
    names.update({full: i for i, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))})
    first, sep, last = key.strip().lower().partition("-")
    if first in names and (not sep or last in names):
        start, stop = names[first], names[last if sep else first]
        if start <= stop:
            return list(range(start, stop + 1))
    raise ValueError(
        f"unknown weekday {key!r}; use mon, tue, wed, thu, fri, sat, sun or a range such as mon-fri"
    )


def week_hours(hours: dict[str, list[str] | str]) -> dict[int, list[Interval]]:
    """``{"mon-fri": ["09:00-17:00"]}`` as ``{0: [(32400, 61200)], ...}``; errors name the key."""
    week: dict[int, list[Interval]] = {}
    given_by: dict[int, str] = {}
    for key, texts in hours.items():
        days = _weekdays(key)
        try:
            intervals = [parse_interval(text) for text in ([texts] if isinstance(texts, str) else texts)]
        except CalendarError as error:
            raise ValueError(f"{key}: {error}") from None
        for day in days:
            if day in given_by:
                raise ValueError(f"{WEEKDAYS[day]} is given twice, in {given_by[day]!r} and {key!r}")
            given_by[day] = key
            week[day] = intervals
    try:
        BusinessCalendar("UTC", week)
    except CalendarError as error:
        raise ValueError(str(error)) from None
    return week


# -- what the worker asks --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """A time limit, and the calendar it runs in (``None``: around the clock)."""

    seconds: float
    calendar: BusinessCalendar | None = None

    def deadline(self, start: float) -> float:
        """When the target runs out for something that started at ``start``."""
        if self.calendar is None:
            return start + self.seconds
        return self.calendar.add_business_seconds(start, self.seconds)

    def elapsed(self, start: float, end: float) -> float:
        """How much of the target's time ``[start, end)`` used."""
        if self.calendar is None:
            return max(end - start, 0.0)
        return self.calendar.business_seconds_between(start, end)

    def is_met(self, start: float, end: float) -> bool:
        """Whether an answer at ``end`` to a request at ``start`` is within target."""
        return self.elapsed(start, end) <= self.seconds


@dataclass(frozen=True, slots=True)
class Objectives:
    """The shares a team aims for: promises on time, responses and greetings within target."""

    promise_on_time: float
    response_within_target: float
    greeting_within_target: float


class Policy:
    """Targets, at-risk thresholds, objectives and calendars; lookups are cached.

    Precedence for targets, most specific first: team + channel + priority, team +
    channel, team, channel + priority, channel, default. A request without a priority
    skips the priority levels. For at-risk thresholds: team + kind, team, kind, default.
    """

    def __init__(self, spec: PolicyFile, source: str = "built-in policy") -> None:
        self.spec = spec
        self.source = source
        self.calendars: dict[str, BusinessCalendar] = {
            name: BusinessCalendar(table.timezone, week_hours(table.hours), table.holidays)
            for name, table in spec.calendars.items()
        }
        # A table in the file replaces the built-in one; its default falls back to the built-in default.
        self._response = _with_default(spec.response, Targets(**DEFAULT_RESPONSE))
        self._greeting = _with_default(spec.greeting, Targets(**DEFAULT_GREETING))
        self._at_risk = _with_default(spec.at_risk, AtRisk(default=DEFAULT_AT_RISK))
        self.response_target = lru_cache(maxsize=4096)(self.response_target)
        self.greeting_target = lru_cache(maxsize=4096)(self.greeting_target)

    @classmethod
    def default(cls, at_risk_seconds: float | None = None) -> "Policy":
        """No policy file: built-in targets, 15-minute at-risk window (or ``at_risk_seconds``),
        24/7 for every team."""
        if at_risk_seconds is None:
            return cls(PolicyFile())
        return cls(PolicyFile(at_risk=AtRisk(default=at_risk_seconds)))

    @property
    def teams(self) -> list[str]:
        return list(self.spec.teams)

    def calendar_for(self, team: str) -> BusinessCalendar | None:
        """The team's calendar, or ``None`` if it works around the clock."""
        table = self.spec.teams.get(team)
        return self.calendars[table.calendar] if table and table.calendar else None

    def response_target(self, team: str, channel: str, priority: str | None = None) -> Target:
        """How quickly a ``channel`` request of ``priority`` to ``team`` must be answered."""
        table = self.spec.teams.get(team)
        seconds = _most_specific(table and table.response, self._response, channel, priority)
        return Target(seconds, self.calendar_for(team))

    def greeting_target(self, team: str, channel: str, priority: str | None = None) -> Target:
        """How quickly a ``channel`` contact with ``team`` must be greeted."""
        table = self.spec.teams.get(team)
        seconds = _most_specific(table and table.greeting, self._greeting, channel, priority)
        return Target(seconds, self.calendar_for(team))

    def at_risk_seconds(self, team: str, kind: str | None = None) -> float:
        """How long before its due time an open promise counts as at risk."""
        table = self.spec.teams.get(team)
        for level in (table and table.at_risk, self._at_risk):
            if level is None:
                continue
            by_kind = getattr(level, kind) if kind in KINDS else None
            if by_kind is not None:
                return by_kind
            if level.default is not None:
                return level.default
        raise AssertionError("the global level always has a default")

    def at_risk_horizon(self, team: str, kind: str | None, now: float) -> float:
        """Open promises due at or before this instant are at risk at ``now``.

        The threshold runs in the team's calendar: at 16:00 on a Friday, a team open
        09:00-17:00 with a 2 h threshold already sees promises due by Monday 10:00.
        """
        return Target(self.at_risk_seconds(team, kind), self.calendar_for(team)).deadline(now)

    def warning_time(self, team: str, kind: str | None, due_at: float) -> float:
        """When an open promise due at ``due_at`` becomes at risk: the last instant that
        still leaves the threshold's worth of the team's business time before it is due.

        The inverse of :meth:`at_risk_horizon`: due Monday 10:00, with hours 09:00-17:00
        and a 2 h threshold, the warning comes on Friday at 16:00.
        """
        threshold = self.at_risk_seconds(team, kind)
        calendar = self.calendar_for(team)
        if calendar is None or calendar.is_always_open:
            return due_at - threshold
        return _business_time_before(calendar, due_at, threshold)

    def objectives(self, team: str) -> Objectives:
        """The team's objectives: its own where given, else the file's, else the built-in ones."""
        table = self.spec.teams.get(team)
        values = dict(DEFAULT_OBJECTIVES)
        for level in (self.spec.objectives, table and table.objectives):
            if level is not None:
                values.update({k: v for k, v in level.model_dump().items() if v is not None})
        return Objectives(**values)

    def summary(self) -> str:
        teams = self.spec.teams
        on_calendar = sum(1 for t in teams.values() if t.calendar)
        return (
            f"{_plural(len(self.calendars), 'calendar')}, {_plural(len(teams), 'team')} "
            f"({on_calendar} on a calendar, {len(teams) - on_calendar} around the clock)"
        )


def _business_time_before(calendar: BusinessCalendar, end: float, seconds: float) -> float:
    """The latest instant ``t <= end`` with ``seconds`` of business time in ``[t, end)``.

    Business time left before ``end`` only grows as ``t`` moves back, so a bracket found
    by doubling steps and a bisection to the millisecond find it in ~40 evaluations.
    """
    if seconds <= 0:
        return end
    between = calendar.business_seconds_between
    hi, step = end, max(seconds, 3600.0)
    lo = end - step
    while between(lo, end) < seconds:
        hi, step = lo, step * 2
        lo = end - step
    while hi - lo > 0.001:
        middle = (lo + hi) / 2
        if between(middle, end) >= seconds:
            lo = middle
        else:
            hi = middle
    return lo


def _with_default(table: _Table | None, built_in: _Table) -> _Table:
    if table is None:
        return built_in
    if table.default is None:
        return table.model_copy(update={"default": built_in.default})
    return table


def _most_specific(team_level, global_level, channel: str, priority: str | None) -> float:
    for level in (team_level, global_level):
        if level is None:
            continue
        by_priority = getattr(level, priority, None) if priority in PRIORITIES else None
        for seconds in (
            getattr(by_priority, channel, None) if by_priority is not None else None,
            getattr(level, channel, None) if channel in CHANNELS else None,
            level.default,
        ):
            if seconds is not None:
                return seconds
    raise AssertionError("the global level always has a default")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- loading -----------------------------------------------------------------------------
def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; :class:`PolicyError` lists everything wrong with it."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyError(source, [f"cannot read the file: {error.strerror or error}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"not valid TOML: {error}"]) from None
    return policy_from_dict(data, source)


def policy_from_dict(data: dict[str, Any], source: str = "policy") -> Policy:
    """Validate parsed TOML; ``source`` names it in error messages."""
    problems = _unknown_calendars(data)
    try:
        spec = PolicyFile.model_validate(data)
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors()] + problems
    if problems:
        raise PolicyError(source, problems)
    return Policy(spec, source)


def _unknown_calendars(data: dict[str, Any]) -> list[str]:
    """Teams naming a calendar the file does not define (read from the raw tables, so this
    is reported together with every other problem)."""
    calendars, teams = data.get("calendars"), data.get("teams")
    defined = sorted(calendars) if isinstance(calendars, dict) else []
    problems = []
    for team, table in (teams.items() if isinstance(teams, dict) else ()):
        name = table.get("calendar") if isinstance(table, dict) else None
        if isinstance(name, str) and name not in defined:
            close = difflib.get_close_matches(name, defined, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + (
                f"defined calendars: {', '.join(defined)}" if defined
                else "define it under [calendars.NAME], or remove the key for 24/7")
            problems.append(f"teams.{team}.calendar: unknown calendar {name!r}; {hint}")
    return problems


def _describe(error: dict[str, Any]) -> str:
    """One pydantic error as 'key.path: what is wrong; what to write instead'."""
    loc = [str(part) for part in error["loc"]]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = _keys_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        message = f"unknown key {loc[-1]!r}; " + (f"did you mean {close[0]!r}? " if close else "") + \
            f"keys here: {', '.join(allowed)}"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif loc and loc[-1] == "[key]":
        loc.pop()
        if loc[0] == "teams":
            message = "a team name is letters, digits, '_', '.' and '-', starting with a letter " \
                "or digit, as in the events' `team` field"
        message = f"{loc[-1]!r} is not a valid name: {message}"
    return f"{'.'.join(loc) or '(top level)'}: {message}"


def _keys_at(loc: list[str]) -> list[str]:
    """The keys a table at ``loc`` may hold, by walking the models."""
    model: Any = PolicyFile
    skip_key = False
    for part in loc:
        if skip_key:
            skip_key = False
            continue
        annotation = model.model_fields[part].annotation
        if typing.get_origin(annotation) is dict:
            annotation, skip_key = typing.get_args(annotation)[1], True
        else:  # Optional[Table]
            annotation = next(a for a in typing.get_args(annotation) or (annotation,) if a is not type(None))
        model = annotation
    return list(model.model_fields)


# -- command line ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.policy", description="Validate a servicewatch policy file (docs/policy.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a policy file and summarise it")
    check.add_argument("path", type=Path, help="the policy file, e.g. deploy/policy.example.toml")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.path)
    except PolicyError as error:
        print(error, file=sys.stderr)
        print(f"policy invalid: {_plural(len(error.problems), 'problem')}", file=sys.stderr)
        return 1
    print(f"policy OK: {policy.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
