"""Business-hours arithmetic, checked against dates worked out by hand and a minute-by-minute oracle."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.calendar import (
    DAY,
    BusinessCalendar,
    CalendarError,
    parse_clock,
    parse_interval,
)

H = 3600
LONDON, NEW_YORK, SYDNEY, SANTIAGO = (
    ZoneInfo(name) for name in ("Europe/London", "America/New_York", "Australia/Sydney", "America/Santiago")
)
MON_TO_FRI = range(5)


def at(zone, *when):
    """Epoch seconds of a wall-clock time in ``zone`` (first occurrence if repeated)."""
    return datetime(*when, tzinfo=zone).timestamp()


def wall(zone, instant):
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def calendar(zone, hours, holidays=()):
    """``hours``: {weekday: "09:00-17:00 ..."}."""
    return BusinessCalendar(
        zone, {day: [parse_interval(t) for t in text.split()] for day, text in hours.items()}, holidays
    )


NINE_TO_FIVE = calendar(LONDON, {day: "09:00-17:00" for day in MON_TO_FRI})
LUNCH = calendar(
    LONDON, {day: "09:00-12:30 13:30-17:30" for day in MON_TO_FRI},
    holidays=[date(2025, 12, 25), date(2025, 12, 26), date(2026, 1, 1)],
)
# Open across the small hours, where the clocks change.
NIGHTS = {
    zone: calendar(zone, {6: "00:00-06:00", 5: "22:00-24:00"}) for zone in (LONDON, NEW_YORK, SYDNEY)
}


# -- adding business time ---------------------------------------------------------------
def test_a_target_set_late_on_friday_runs_on_into_monday():
    friday_4pm = at(LONDON, 2025, 3, 7, 16)
    # 1 h on Friday (16-17), the remaining 3 h from Monday 09:00.
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(friday_4pm, 4 * H)) == datetime(2025, 3, 10, 12)


def test_the_clock_starts_at_the_next_opening():
    saturday = at(LONDON, 2025, 3, 8, 10)
    early = at(LONDON, 2025, 3, 11, 7)
    late = at(LONDON, 2025, 3, 11, 19)
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(saturday, H)) == datetime(2025, 3, 10, 10)
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(early, 30 * 60)) == datetime(2025, 3, 11, 9, 30)
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(late, 30 * 60)) == datetime(2025, 3, 12, 9, 30)


def test_a_lunch_break_is_not_business_time():
    noon = at(LONDON, 2025, 3, 11, 12)
    assert wall(LONDON, LUNCH.add_business_seconds(noon, H)) == datetime(2025, 3, 11, 14)
    assert LUNCH.business_seconds_between(noon, at(LONDON, 2025, 3, 11, 14)) == H
    assert not LUNCH.is_open(at(LONDON, 2025, 3, 11, 13))
    assert LUNCH.is_open(at(LONDON, 2025, 3, 11, 13, 30))


def test_a_target_that_runs_out_at_closing_time_ends_then():
    start = at(LONDON, 2025, 3, 11, 16)
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(start, H)) == datetime(2025, 3, 11, 17)


def test_zero_seconds_is_now_when_open_and_the_next_opening_when_closed():
    inside = at(LONDON, 2025, 3, 11, 10, 15)
    assert NINE_TO_FIVE.add_business_seconds(inside, 0) == inside
    closing = at(LONDON, 2025, 3, 11, 17)  # intervals are [open, close)
    assert wall(LONDON, NINE_TO_FIVE.add_business_seconds(closing, 0)) == datetime(2025, 3, 12, 9)
    assert NINE_TO_FIVE.business_seconds_between(inside, inside) == 0


def test_holidays_close_whole_days_across_the_year_end():
    christmas_eve = at(LONDON, 2025, 12, 24, 16)
    # 24th: 16:00-17:30 (1.5 h); 25th, 26th holidays; weekend; Monday 29th 09:00 + 0.5 h.
    assert wall(LONDON, LUNCH.add_business_seconds(christmas_eve, 2 * H)) == datetime(2025, 12, 29, 9, 30)
    new_years_eve = at(LONDON, 2025, 12, 31, 17)
    assert wall(LONDON, LUNCH.add_business_seconds(new_years_eve, H)) == datetime(2026, 1, 2, 9, 30)
    on_the_holiday = at(LONDON, 2026, 1, 1, 10)
    assert wall(LONDON, LUNCH.add_business_seconds(on_the_holiday, 0)) == datetime(2026, 1, 2, 9)
    # Open: 24th, 29th, 30th, 31st December and 2nd January.
    assert LUNCH.business_seconds_between(at(LONDON, 2025, 12, 24), at(LONDON, 2026, 1, 3)) == 5 * 7.5 * H


def test_a_negative_or_endless_amount_is_refused():
    with pytest.raises(ValueError, match="finite number >= 0"):
        NINE_TO_FIVE.add_business_seconds(0, -1)
    with pytest.raises(ValueError, match="finite number >= 0"):
        NINE_TO_FIVE.add_business_seconds(0, float("inf"))


def test_a_span_that_ends_before_it_starts_has_no_business_time():
    start = at(LONDON, 2025, 3, 11, 12)
    assert NINE_TO_FIVE.business_seconds_between(start, start - H) == 0


# -- clocks changing ------------------------------------------------------------------
@pytest.mark.parametrize("zone, short_night, long_night", [
    (LONDON, date(2025, 3, 30), date(2025, 10, 26)),
    (NEW_YORK, date(2025, 3, 9), date(2025, 11, 2)),
    (SYDNEY, date(2025, 10, 5), date(2025, 4, 6)),  # southern hemisphere: the other way round
])
def test_opening_hours_are_wall_clock_so_a_night_with_a_clock_change_is_shorter_or_longer(
    zone, short_night, long_night
):
    nights = NIGHTS[zone]
    for night, hours in ((short_night, 5), (long_night, 7)):
        start = at(zone, night.year, night.month, night.day)
        assert nights.business_seconds_between(start, start + DAY) == hours * H
        ends = nights.add_business_seconds(start, 6 * H)
        if hours == 7:  # six hours are up an hour before 06:00
            assert wall(zone, ends) == datetime(night.year, night.month, night.day, 5)
        else:  # one hour short: it spills into the next opening, Saturday 22:00
            assert wall(zone, ends) == datetime.combine(night + timedelta(days=6), datetime.min.time()) \
                .replace(hour=23)


def test_a_whole_open_day_has_23_or_25_hours_when_the_clocks_change():
    sundays = calendar(LONDON, {6: "00:00-24:00"})
    spring, autumn = at(LONDON, 2025, 3, 30), at(LONDON, 2025, 10, 26)
    assert sundays.business_seconds_between(spring, spring + 2 * DAY) == 23 * H
    assert sundays.business_seconds_between(autumn, autumn + 2 * DAY) == 25 * H
    assert sundays.add_business_seconds(spring, 23 * H) == spring + 23 * H


def test_a_boundary_in_a_skipped_hour_moves_to_the_end_of_the_gap():
    # 2025-03-30 London: 01:00 GMT becomes 02:00 BST; "01:30" never shows on the clock.
    odd = calendar(LONDON, {6: "01:30-02:30"})
    sunday = at(LONDON, 2025, 3, 30)
    assert odd.business_seconds_between(sunday, sunday + DAY) == 30 * 60
    assert wall(LONDON, odd.add_business_seconds(sunday, 0)) == datetime(2025, 3, 30, 2)


def test_a_boundary_in_a_repeated_hour_means_its_first_occurrence():
    # 2025-10-26 London: 01:00-02:00 happens twice, first in BST then in GMT.
    odd = calendar(LONDON, {6: "01:00-01:30"})
    sunday = at(LONDON, 2025, 10, 26)
    assert odd.business_seconds_between(sunday, sunday + DAY) == 30 * 60


def test_a_zone_whose_clocks_skip_midnight():
    # Chile springs forward at 24:00: Sunday 2025-09-07 begins at 01:00.
    sundays = calendar(SANTIAGO, {6: "00:00-03:00"})
    saturday = at(SANTIAGO, 2025, 9, 6, 12)
    assert sundays.business_seconds_between(saturday, saturday + 2 * DAY) == 2 * H
    assert wall(SANTIAGO, sundays.add_business_seconds(saturday, 0)) == datetime(2025, 9, 7, 1)


# -- long spans -----------------------------------------------------------------------
def test_a_year_of_business_time_is_counted_by_whole_weeks():
    monday = at(LONDON, 2025, 1, 6, 9)
    year_later = NINE_TO_FIVE.add_business_seconds(monday, 52 * 40 * H)
    assert wall(LONDON, year_later) == datetime(2026, 1, 2, 17)  # the 52nd Friday, at closing
    assert NINE_TO_FIVE.business_seconds_between(monday, year_later) == 52 * 40 * H


def test_a_year_of_nights_includes_both_clock_changes():
    nights = NIGHTS[LONDON]
    start, end = at(LONDON, 2025, 1, 1), at(LONDON, 2026, 1, 1)
    # 52 Sundays and 52 Saturdays in 2025 (it starts on a Wednesday): 8 h each weekend,
    # an hour less on 30 March, an hour more on 26 October.
    assert nights.business_seconds_between(start, end) == 52 * 8 * H
    with_holidays = calendar(LONDON, {6: "00:00-06:00", 5: "22:00-24:00"}, holidays=[date(2025, 3, 30)])
    assert with_holidays.business_seconds_between(start, end) == 52 * 8 * H - 5 * H


def test_an_amount_beyond_a_century_of_opening_hours_is_an_error_not_a_hang():
    a_minute_a_week = calendar(LONDON, {0: "09:00-09:01"})
    with pytest.raises(CalendarError, match="more than"):
        a_minute_a_week.add_business_seconds(at(LONDON, 2025, 1, 1), 1e9)


# -- 24/7 -----------------------------------------------------------------------------
def test_always_open_is_plain_arithmetic():
    always = BusinessCalendar.always_open()
    assert always.is_always_open
    assert always.add_business_seconds(1_000.5, 86_400 * 400) == 1_000.5 + 86_400 * 400
    assert always.business_seconds_between(10.0, 12.5) == 2.5
    assert always.business_seconds_between(12.5, 10.0) == 0


def test_a_24_hour_week_with_holidays_is_not_always_open():
    all_week = calendar(LONDON, {day: "00:00-24:00" for day in range(7)}, holidays=[date(2025, 12, 25)])
    assert not all_week.is_always_open
    eve = at(LONDON, 2025, 12, 24, 12)
    assert wall(LONDON, all_week.add_business_seconds(eve, 13 * H)) == datetime(2025, 12, 26, 1)


# -- what cannot be a calendar --------------------------------------------------------
def test_a_calendar_never_open_is_refused_when_made():
    with pytest.raises(CalendarError, match="never open"):
        BusinessCalendar(LONDON, {})
    with pytest.raises(CalendarError, match="never open"):
        BusinessCalendar(LONDON, {0: []})


@pytest.mark.parametrize("text, message", [
    ("22:00-06:00", "'22:00-06:00' ends before it starts; an interval that spans midnight is written "
                    "as two, '22:00-24:00' on one day and '00:00-06:00' on the next"),
    ("09:00-09:00", "'09:00-09:00' is empty"),
    ("9am-5pm", "'9am' is not a time of day; write HH:MM"),
    ("09:00", "'09:00' is not an interval; write OPEN-CLOSE"),
    ("09:00-24:30", "'24:30' is not a time of day; use 00:00 to 24:00"),
    ("09:60-10:00", "'09:60' is not a time of day; use 00:00 to 24:00"),
])
def test_intervals_that_make_no_sense_are_refused(text, message):
    with pytest.raises(CalendarError) as error:
        parse_interval(text)
    assert str(error.value).startswith(message)


def test_overlapping_intervals_are_refused_and_touching_ones_merged():
    with pytest.raises(CalendarError, match="tue: 12:00-17:00 overlaps 09:00-13:00"):
        BusinessCalendar(LONDON, {1: [(9 * H, 13 * H), (12 * H, 17 * H)]})
    merged = BusinessCalendar(LONDON, {1: [(12 * H, 17 * H), (9 * H, 12 * H)]})
    assert merged.hours[1] == ((9 * H, 17 * H),)


def test_weekdays_and_zones_that_do_not_exist_are_refused():
    with pytest.raises(CalendarError, match=r"weekdays are 0 \(Monday\) to 6 \(Sunday\), not \[7\]"):
        BusinessCalendar(LONDON, {7: [(0, H)]})
    with pytest.raises(CalendarError, match="unknown time zone 'Europe/Lodnon'; did you mean Europe/London"):
        BusinessCalendar("Europe/Lodnon", {0: [(0, H)]})


def test_clock_times():
    assert parse_clock("00:00") == 0
    assert parse_clock("24:00") == DAY
    assert parse_clock("17:30:15") == 17 * H + 30 * 60 + 15


# -- properties -----------------------------------------------------------------------
CALENDARS = [
    LUNCH,
    NIGHTS[SYDNEY],
    NIGHTS[NEW_YORK],
    calendar(SANTIAGO, {6: "00:00-03:00", 2: "08:00-20:00"}, holidays=[date(2025, 9, 17)]),
    calendar(LONDON, {0: "09:00-10:00"}),  # sparse: long spans, week by week
]
FROM, TO = at(LONDON, 2024, 1, 1), at(LONDON, 2027, 1, 1)
instants = st.one_of(st.integers(FROM, TO).map(float), st.floats(FROM, TO))
amounts = st.one_of(st.integers(0, 40 * 86_400).map(float), st.floats(0, 40 * 86_400))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CALENDARS), instants, amounts)
def test_adding_then_measuring_gives_back_the_amount(cal, start, seconds):
    end = cal.add_business_seconds(start, seconds)
    assert end >= start
    assert cal.business_seconds_between(start, end) == pytest.approx(seconds, abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CALENDARS), instants, amounts, amounts)
def test_more_business_time_never_ends_earlier(cal, start, a, b):
    low, high = sorted((a, b))
    assert cal.add_business_seconds(start, low) <= cal.add_business_seconds(start, high)
    assert cal.business_seconds_between(start, start + low) <= cal.business_seconds_between(start, start + high)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CALENDARS), instants, instants)
def test_later_starts_never_end_earlier(cal, a, b):
    early, late = sorted((a, b))
    assert cal.add_business_seconds(early, 3600) <= cal.add_business_seconds(late, 3600)


def _open_minutes(cal, start, end):
    """Oracle: read the wall clock at every minute and ask whether the calendar is open."""
    count = 0
    for t in range(int(start), int(end), 60):
        local = datetime.fromtimestamp(t, cal.zone)
        seconds = local.hour * H + local.minute * 60
        if local.date() not in cal.holidays and any(
            o <= seconds < c for o, c in cal.hours[local.weekday()]
        ):
            count += 1
    return count * 60


CLOCK_CHANGES = [
    (LONDON, (2025, 3, 30)), (LONDON, (2025, 10, 26)), (NEW_YORK, (2025, 3, 9)), (NEW_YORK, (2025, 11, 2)),
    (SYDNEY, (2025, 4, 6)), (SYDNEY, (2025, 10, 5)), (SANTIAGO, (2025, 9, 7)), (SANTIAGO, (2025, 4, 6)),
]
ORACLE_CALENDARS = {
    zone: calendar(zone, {5: "08:00-12:30 13:30-23:00", 6: "00:00-06:00 22:00-24:00", 0: "00:00-24:00"},
                   holidays=[date(2025, 4, 7)])
    for zone in (LONDON, NEW_YORK, SYDNEY, SANTIAGO)
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CLOCK_CHANGES), st.integers(-3 * 1440, 3 * 1440), st.integers(0, 4 * 1440))
def test_spans_around_clock_changes_agree_with_reading_the_wall_clock(change, offset, length):
    zone, day = change
    cal = ORACLE_CALENDARS[zone]
    start = at(zone, *day) + offset * 60
    end = start + length * 60
    assert cal.business_seconds_between(start, end) == _open_minutes(cal, start, end)
