"""The policy file: what it accepts, what it refuses (and says so), and what each lookup returns."""

import re
import subprocess
import sys
import textwrap
import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schemas.events import Channel, Priority
from streams.policy import (
    Objectives,
    Policy,
    PolicyError,
    Target,
    format_duration,
    load_policy,
    main,
    parse_duration,
    policy_from_dict,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.toml"
LONDON = ZoneInfo("Europe/London")
H = 3600


def london(*when):
    return datetime(*when, tzinfo=LONDON).timestamp()


def write(tmp_path, text, name="policy.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    """The error lines for a policy file, without the file-name prefix (checked once below)."""
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    prefix = f"{path}: "
    lines = str(error.value).splitlines()
    assert all(line.startswith(prefix) for line in lines)
    return [line.removeprefix(prefix) for line in lines]


# -- durations ------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("4h", 14400.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), ("2d", 172800.0), ("1w", 604800.0), (" 4H ", 14400.0), (0, 0.0),
])
def test_durations_are_seconds_or_strings_with_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value, message", [
    ("4x", "'4x' is not a duration; write seconds (90) or e.g. '90s', '30m', '4h', '1d', '1h30m'"),
    ("h", "'h' is not a duration"),
    ("", "'' is not a duration"),
    ("4h 30", "'4h 30' is not a duration"),
    (True, "True is not a duration"),
    (-5, "a duration cannot be negative, got -5"),
    ("-5m", "a duration cannot be negative, got '-5m'"),
    (float("inf"), "a duration must be finite, got inf"),
])
def test_what_is_not_a_duration(value, message):
    with pytest.raises(ValueError) as error:
        parse_duration(value)
    assert str(error.value).startswith(message)


def test_durations_print_the_way_they_are_written():
    assert [format_duration(s) for s in (14400, 5400, 90, 0, 0.5, 86400)] == \
        ["4h", "1h30m", "1m30s", "0s", "0.5s", "1d"]


# -- without a file -------------------------------------------------------------------
def test_the_default_policy_keeps_the_numbers_the_rules_and_settings_use():
    policy = Policy.default()
    response = {c: policy.response_target("any", c).seconds for c in ("chat", "phone", "email", "social")}
    assert response == {"chat": 60, "phone": 300, "email": 3600, "social": 900}  # recording.yml
    greeting = {c: policy.greeting_target("any", c).seconds for c in ("phone", "chat", "email", "web")}
    assert greeting == {"phone": 20, "chat": 30, "email": 3600, "web": 60}
    assert policy.at_risk_seconds("any", "callback") == 900  # settings.py
    assert policy.objectives("any") == Objectives(0.95, 0.90, 0.90)
    assert policy.response_target("any", "chat").calendar is None
    assert policy.at_risk_horizon("any", "callback", 1_000.0) == 1_900.0


# -- the example ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def example():
    return load_policy(EXAMPLE)


def test_the_example_file_loads(example):
    assert example.summary() == "2 calendars, 4 teams (3 on a calendar, 1 around the clock)"
    assert example.teams == ["billing", "logistics", "support", "sales"]


def test_the_example_measures_billing_in_london_office_hours(example):
    target = example.response_target("billing", "email", "urgent")
    assert target.seconds == 2 * H
    assert target.calendar is example.calendars["uk-office"]
    friday_5pm = london(2026, 3, 6, 17)  # 17:00-17:30 open, then Monday from 09:00
    assert datetime.fromtimestamp(target.deadline(friday_5pm), LONDON).replace(tzinfo=None) == \
        datetime(2026, 3, 9, 10, 30)


def test_targets_take_the_most_specific_level_that_is_set(example):
    # billing: team+channel+priority, team+channel; no team default, so then the global levels.
    assert example.response_target("billing", "email", "urgent").seconds == 2 * H
    assert example.response_target("billing", "email", "low").seconds == 8 * H  # team+channel beats channel+priority
    assert example.response_target("billing", "chat", "urgent").seconds == 30  # channel+priority
    assert example.response_target("billing", "chat").seconds == 60  # channel
    assert example.response_target("billing", "video").seconds == 15 * 60  # default
    # support: a team-wide target beats every global level, even channel+priority.
    assert example.response_target("support", "email", "urgent").seconds == 10 * 60
    # a team not in the file: global levels, around the clock.
    assert example.response_target("unknown", "email", "urgent") == Target(H)
    assert example.response_target("unknown", "email", "low") == Target(86400)


def test_every_precedence_level_in_turn(tmp_path):
    levels = {
        "team+channel+priority": 1, "team+channel": 2, "team": 3, "channel+priority": 4, "channel": 5,
        "default": 6,
    }
    def policy_with(present):
        team = {}
        if "team+channel+priority" in present:
            team.setdefault("urgent", {})["email"] = 1
        if "team+channel" in present:
            team["email"] = 2
        if "team" in present:
            team["default"] = 3
        glob = {"default": 6}
        if "channel+priority" in present:
            glob["urgent"] = {"email": 4}
        if "channel" in present:
            glob["email"] = 5
        return policy_from_dict({"response": glob, "teams": {"t": {"response": team}}})

    present = set(levels)
    for name, seconds in levels.items():  # remove the most specific level each time
        assert policy_with(present).response_target("t", "email", "urgent").seconds == seconds, name
        present.discard(name)


def test_a_request_without_priority_skips_the_priority_levels(example):
    assert example.response_target("billing", "email", None).seconds == 8 * H
    assert example.response_target("logistics", "email").seconds == 4 * H


def test_lookups_accept_the_schema_enums(example):
    assert example.response_target("billing", Channel.EMAIL, Priority.URGENT).seconds == 2 * H


def test_greeting_targets_follow_the_same_rules(example):
    assert example.greeting_target("sales", "phone").seconds == 20
    assert example.greeting_target("sales", "phone").calendar is example.calendars["uk-office"]
    assert example.greeting_target("support", "sms").seconds == 60


def test_a_table_in_the_file_replaces_the_built_in_targets():
    policy = policy_from_dict({"response": {"email": "4h"}})
    assert policy.response_target("t", "email").seconds == 4 * H
    assert policy.response_target("t", "chat").seconds == 900  # not the built-in 60: the table replaced it
    assert policy_from_dict({"response": "2h"}).response_target("t", "chat").seconds == 2 * H


def test_a_response_is_within_target_by_business_time(example):
    target = example.response_target("billing", "email")  # 8 business hours, uk-office
    friday_evening, monday = london(2026, 3, 6, 19), london(2026, 3, 9, 16)
    assert target.elapsed(friday_evening, monday) == 6 * H  # 09:00-12:30, 13:30-16:00
    assert target.is_met(friday_evening, monday)
    assert not target.is_met(friday_evening, london(2026, 3, 10, 10))
    around_the_clock = example.response_target("support", "email")
    assert around_the_clock.elapsed(100.0, 700.0) == 600
    assert around_the_clock.is_met(100.0, 700.0) and not around_the_clock.is_met(100.0, 700.5)


# -- at risk, objectives --------------------------------------------------------------
def test_at_risk_thresholds_by_team_and_kind(example):
    assert example.at_risk_seconds("logistics", "delivery") == 86400  # team + kind
    assert example.at_risk_seconds("logistics", "callback") == H  # team
    assert example.at_risk_seconds("billing", "delivery") == 2 * H  # team beats kind
    assert example.at_risk_seconds("support", "delivery") == 12 * H  # kind
    assert example.at_risk_seconds("support", "refund") == 30 * 60  # default
    assert example.at_risk_seconds("support", None) == 30 * 60


def test_the_at_risk_window_runs_in_business_time(example):
    friday_4pm = london(2026, 3, 6, 16)
    # billing: 2 h in the uk-office calendar: 16:00-17:30, then Monday 09:00-09:30.
    horizon = example.at_risk_horizon("billing", "callback", friday_4pm)
    assert datetime.fromtimestamp(horizon, LONDON).replace(tzinfo=None) == datetime(2026, 3, 9, 9, 30)
    assert example.at_risk_horizon("support", "callback", friday_4pm) == friday_4pm + 30 * 60


def test_objectives_per_team_fall_back_key_by_key(example):
    assert example.objectives("billing") == Objectives(0.98, 0.90, 0.90)
    assert example.objectives("support") == Objectives(0.95, 0.90, 0.90)
    partial = policy_from_dict({"objectives": {"response_within_target": 0.8}})
    assert partial.objectives("x") == Objectives(0.95, 0.8, 0.90)


# -- what the file refuses, and what it says --------------------------------------------
def test_an_unknown_calendar_names_the_ones_defined(tmp_path):
    assert problems(tmp_path, """
        [calendars.uk-office]
        timezone = "Europe/London"
        hours = { mon-fri = "09:00-17:00" }
        [calendars.us-east]
        timezone = "America/New_York"
        hours = { mon-fri = "08:00-20:00" }
        [teams.billing]
        calendar = "uk-ofice"
    """) == [
        "teams.billing.calendar: unknown calendar 'uk-ofice'; did you mean 'uk-office'? "
        "defined calendars: uk-office, us-east"
    ]


def test_a_calendar_named_when_none_is_defined(tmp_path):
    assert problems(tmp_path, '[teams.billing]\ncalendar = "office"\n') == [
        "teams.billing.calendar: unknown calendar 'office'; define it under [calendars.NAME], "
        "or remove the key for 24/7"
    ]


@pytest.mark.parametrize("toml, expected", [
    ('[response]\nemail = "4x"',
     "response.email: '4x' is not a duration; write seconds (90) or e.g. '90s', '30m', '4h', '1d', '1h30m'"),
    ('[response]\nemail = -60',
     "response.email: a duration cannot be negative, got -60"),
    ('[teams.billing.response.urgent]\nemail = "-1h"',
     "teams.billing.response.urgent.email: a duration cannot be negative, got '-1h'"),
    ('[at_risk]\ndelivery = "soon"',
     "at_risk.delivery: 'soon' is not a duration; write seconds (90) or e.g. '90s', '30m', '4h', '1d', '1h30m'"),
    ('[objectives]\npromise_on_time = 95',
     "objectives.promise_on_time: an objective is a share between 0 and 1 (exclusive), e.g. 0.95; got 95"),
    ('[response]\nemial = "4h"',
     "response.emial: unknown key 'emial'; did you mean 'email'? keys here: default, phone, email, chat, "
     "social, in_person, sms, web, video, other, low, normal, high, urgent"),
    ('[response.urgent]\ndefault = "1h"',
     "response.urgent.default: unknown key 'default'; keys here: phone, email, chat, social, in_person, sms, "
     "web, video, other"),
    ('[at_risk]\ncall_back = "1h"',
     "at_risk.call_back: unknown key 'call_back'; did you mean 'callback'? keys here: default, callback, "
     "delivery, resolution, refund, visit, other"),
    ('[teams.billing]\nrespons = "1h"',
     "teams.billing.respons: unknown key 'respons'; did you mean 'response'? keys here: calendar, response, "
     "greeting, at_risk, objectives"),
    ('[teams."bill ing"]',
     "teams.bill ing: 'bill ing' is not a valid name: a team name is letters, digits, '_', '.' and '-', "
     "starting with a letter or digit, as in the events' `team` field"),
    ('[calendars.office]\nhours = { mon = "09:00-17:00" }',
     "calendars.office.timezone: required key is missing"),
])
def test_values_the_file_refuses(tmp_path, toml, expected):
    assert problems(tmp_path, toml) == [expected]


@pytest.mark.parametrize("hours, timezone, expected", [
    ('{ mon-fry = "09:00-17:00" }', "Europe/London",
     "calendars.office.hours: unknown weekday 'mon-fry'; use mon, tue, wed, thu, fri, sat, sun or a range "
     "such as mon-fri"),
    ('{ fri-mon = "09:00-17:00" }', "Europe/London",
     "calendars.office.hours: unknown weekday 'fri-mon'; use mon, tue, wed, thu, fri, sat, sun or a range "
     "such as mon-fri"),
    ('{ mon-fri = "09:00-17:00" }', "Europe/Lodnon",
     "calendars.office.timezone: unknown time zone 'Europe/Lodnon'; did you mean Europe/London, "
     "Europe/Lisbon, Europe/Vienna?"),
    ('{ mon-fri = ["09:00-13:00", "12:00-17:00"] }', "Europe/London",
     "calendars.office.hours: mon: 12:00-17:00 overlaps 09:00-13:00"),
    ('{ fri = "22:00-06:00" }', "Europe/London",
     "calendars.office.hours: fri: '22:00-06:00' ends before it starts; an interval that spans midnight "
     "is written as two, '22:00-24:00' on one day and '00:00-06:00' on the next"),
    ('{ mon-fri = "09:00-17:00", wed = "10:00-12:00" }', "Europe/London",
     "calendars.office.hours: wed is given twice, in 'mon-fri' and 'wed'"),
    ('{ mon = [] }', "Europe/London",
     "calendars.office.hours: the calendar is never open: give at least one weekday an interval such as "
     "'09:00-17:00', or use no calendar for 24/7"),
])
def test_calendars_the_file_refuses(tmp_path, hours, timezone, expected):
    assert problems(tmp_path, f"""
        [calendars.office]
        timezone = "{timezone}"
        hours = {hours}
    """) == [expected]


def test_holidays_are_dates(tmp_path):
    assert problems(tmp_path, """
        [calendars.office]
        timezone = "Europe/London"
        hours = { mon-fri = "09:00-17:00" }
        holidays = [2025-12-25, "2025-12-26", 2025-12-31T12:00:00, "Boxing Day"]
    """) == [
        "calendars.office.holidays.2: a holiday is a whole date such as 2025-12-25, not a time "
        "(2025-12-31 12:00:00)",
        "calendars.office.holidays.3: 'Boxing Day' is not a date; write holidays as 2025-12-25",
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, """
        [response]
        email = "4x"
        [teams.billing]
        calendar = "nowhere"
        at_risk = -1
    """)
    assert [line.split(":")[0] for line in found] == [
        "response.email", "teams.billing.at_risk.default", "teams.billing.calendar"]


def test_a_file_that_is_not_toml_or_not_there(tmp_path):
    assert problems(tmp_path, "[response\n") == [
        "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 10)"]
    with pytest.raises(PolicyError, match=r"missing.toml: cannot read the file: No such file"):
        load_policy(tmp_path / "missing.toml")


# -- the check command ------------------------------------------------------------------
def test_check_summarises_a_good_file(capsys):
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == \
        "policy OK: 2 calendars, 4 teams (3 on a calendar, 1 around the clock)\n"


def test_check_lists_the_problems_and_fails(tmp_path, capsys):
    path = write(tmp_path, '[response]\nemail = "4x"\n[teams.b]\ncalendar = "x"\n')
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}: response.email: '4x' is not a duration")
    assert err[1].startswith(f"{path}: teams.b.calendar: unknown calendar 'x'")
    assert err[2] == "policy invalid: 2 problems"


def test_check_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "streams.policy", "check", str(EXAMPLE)],
        capture_output=True, text=True, cwd=EXAMPLE.parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("policy OK: 2 calendars, 4 teams")


def test_the_example_in_the_docs_means_what_the_docs_say():
    docs = (EXAMPLE.parents[1] / "docs" / "policy.md").read_text()
    policy = policy_from_dict(tomllib.loads(re.search(r"```toml\n(.*?)```", docs, re.S).group(1)))
    assert policy.response_target("billing", "email", "urgent") == Target(2 * H, policy.calendars["uk-office"])
    assert policy.response_target("sales", "email", "urgent") == Target(H)
    assert policy.response_target("billing", "chat") == Target(60, policy.calendars["uk-office"])


def test_the_readme_policy_example_loads_and_says_what_the_readme_says():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Service policy"):readme.index("## Findings and worklists")]
    toml_text = section.split("```toml\n", 1)[1].split("```", 1)[0]
    policy = policy_from_dict(tomllib.loads(toml_text), source="README.md")
    friday = datetime(2026, 11, 27, 17, 25, tzinfo=ZoneInfo("Europe/London")).timestamp()
    monday = datetime(2026, 11, 30, 9, 5, tzinfo=ZoneInfo("Europe/London")).timestamp()
    assert policy.response_target("billing", "email").elapsed(friday, monday) == 600
    assert policy.response_target("billing", "email").seconds == 4 * 3600
    assert policy.response_target("support", "email", "urgent").seconds == 3600
    assert policy.objectives("billing").promise_on_time == 0.97
