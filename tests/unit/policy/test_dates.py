"""Date forms accepted after older_than / newer_than / < / >, resolved against an injected now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynamo_common.policy import AbsoluteDate, AnnualDate, RelativeDate, parse_condition, parse_date
from dynamo_common.policy.dates import DateSyntaxError

from .factories import DAY, add_dataset, add_replica, add_site, make_inventory

NOW = datetime(2024, 3, 31, 12, 0, tzinfo=UTC).timestamp()


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 week ago", NOW - 7 * DAY),
        ("2 weeks ago", NOW - 14 * DAY),
        ("90 days ago", NOW - 90 * DAY),
        ("1 day ago", NOW - DAY),
        ("36 hours ago", NOW - 1.5 * DAY),
        ("30 minutes ago", NOW - 1800),
        ("45 seconds ago", NOW - 45),
        ("1 fortnight ago", NOW - 14 * DAY),
        ("90days ago", NOW - 90 * DAY),
        ("  90   DAYS   AGO ", NOW - 90 * DAY),
    ],
)
def test_relative_dates_count_back_from_now(text: str, expected: float) -> None:
    assert parse_date(text).resolve(NOW) == expected


def test_months_ago_moves_the_calendar_not_thirty_days() -> None:
    assert parse_date("12 months ago").resolve(NOW) == ts(2023, 3, 31, 12)
    assert parse_date("3 months ago").resolve(NOW) == ts(2023, 12, 31, 12)


def test_months_ago_clamps_to_the_end_of_a_shorter_month() -> None:
    assert parse_date("1 month ago").resolve(NOW) == ts(2024, 2, 29, 12)


def test_years_ago_are_twelve_months() -> None:
    assert parse_date("2 years ago").resolve(NOW) == ts(2022, 3, 31, 12)


def test_last_unit_is_one_unit_ago() -> None:
    assert parse_date("last week").resolve(NOW) == NOW - 7 * DAY
    assert parse_date("last month").resolve(NOW) == ts(2024, 2, 29, 12)


def test_now_today_and_yesterday() -> None:
    assert parse_date("now").resolve(NOW) == NOW
    assert parse_date("today").resolve(NOW) == NOW
    assert parse_date("yesterday").resolve(NOW) == NOW - DAY


def test_month_and_day_mean_midnight_utc_of_the_current_year() -> None:
    spec = parse_date("January 1")
    assert isinstance(spec, AnnualDate)
    assert spec.resolve(NOW) == ts(2024, 1, 1)
    assert spec.resolve(ts(2019, 6, 1)) == ts(2019, 1, 1)


@pytest.mark.parametrize("text", ["Jan 1", "january 1", "1 January", "Jan. 1", "January 1st"])
def test_month_names_may_be_abbreviated_and_in_either_order(text: str) -> None:
    assert parse_date(text).resolve(NOW) == ts(2024, 1, 1)


def test_month_day_and_year_is_an_absolute_date() -> None:
    assert parse_date("March 1, 2018") == AbsoluteDate(ts(2018, 3, 1))
    assert parse_date("1 March 2018") == AbsoluteDate(ts(2018, 3, 1))


def test_iso_dates_are_absolute() -> None:
    assert parse_date("2018-03-01") == AbsoluteDate(ts(2018, 3, 1))
    assert parse_date("2018-03-01 13:30") == AbsoluteDate(ts(2018, 3, 1, 13, 30))
    assert parse_date("2018-03-01T13:30:15Z") == AbsoluteDate(ts(2018, 3, 1, 13, 30, 15))


def test_unix_seconds_after_an_at_sign() -> None:
    assert parse_date("@1500000000") == AbsoluteDate(1_500_000_000.0)


def test_relative_date_is_a_spec_resolved_at_bind_time() -> None:
    assert parse_date("3 weeks ago") == RelativeDate(3, "week")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("whenever", "unparsable date 'whenever'"),
        ("2018-02-30", "invalid date"),
        ("February 30", "invalid date: February has no day 30"),
        ("3 lightyears ago", "unknown time unit 'lightyears'"),
        ("", "expected a date"),
    ],
)
def test_bad_dates_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(DateSyntaxError, match=message):
        parse_date(text)


def test_a_condition_rebound_to_another_now_moves_its_relative_dates() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory, last_update=NOW - 10 * DAY)
    replica = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"))
    condition = parse_condition(
        "dataset.last_update older_than 1 week ago", context="replica", now=NOW
    )
    assert condition(replica)
    replayed = condition.bind(now=NOW - 5 * DAY)
    assert not replayed(replica)
    assert replayed.now == NOW - 5 * DAY
    assert condition(replica)


def test_a_condition_takes_the_current_time_when_no_now_is_given() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory, last_update=0.0)
    replica = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"))
    assert parse_condition("dataset.last_update older_than 1 day ago", context="replica")(replica)


def test_absolute_dates_do_not_depend_on_now() -> None:
    inventory = make_inventory()
    dataset = add_dataset(inventory, last_update=ts(2018, 2, 1))
    replica = add_replica(inventory, dataset, add_site(inventory, "T2_US_MIT"))
    condition = parse_condition(
        "dataset.last_update older_than 2018-03-01", context="replica", now=NOW
    )
    assert condition(replica)
    assert condition.bind(now=0.0)(replica)
