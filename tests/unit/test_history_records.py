"""The history's pure parts: stored times, number keys, cursors, who sees what, urls."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from smsgate.config import load
from smsgate.history.database import (
    POSTGRESQL,
    SQLITE,
    StoreError,
    dialect_of,
    redacted,
    sqlite_path,
)
from smsgate.history.records import from_micros, micros, number_key
from smsgate.history.search import (
    BadFilter,
    Filters,
    Viewer,
    decode_cursor,
    encode_cursor,
    timeline_steps,
    where,
)


def test_times_are_stored_as_exact_microseconds() -> None:
    when = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert from_micros(micros(when)) == when
    assert micros(when.replace(tzinfo=None)) == micros(when)  # naive is taken as UTC
    later = when.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert micros(later) == micros(when)


@pytest.mark.parametrize(
    ("number", "key"),
    [
        ("+49 151-234 56", "4915123456"),
        ("4915123456", "4915123456"),
        ("10086", "10086"),
        (" BANK ", "bank"),
    ],
)
def test_a_number_is_searched_by_its_digits(number: str, key: str) -> None:
    assert number_key(number) == key


def test_cursors_round_trip_and_refuse_what_the_api_did_not_give() -> None:
    assert decode_cursor(encode_cursor(1764590400000000, "m-1")) == (1764590400000000, "m-1")
    for bad in ("", "abc", encode_cursor(1, "x")[:-2] + "!!", "WyJhIiwgMV0"):
        with pytest.raises(BadFilter, match="cursor"):
            decode_cursor(bad)


def test_a_user_is_limited_to_their_messages_and_their_ports_inbound() -> None:
    clause, params = where(Filters(), Viewer(name="alice", ports=["lte-1", "gsm_*"]), "sqlite")
    assert clause == (
        "((direction = 'out' AND user_name = ?) OR (direction = 'in' AND "
        "(port LIKE ? ESCAPE '\\' OR port LIKE ? ESCAPE '\\')))"
    )
    assert params == ["alice", "lte-1", "gsm\\_%"]
    assert where(Filters(), Viewer(name="root", admin=True), "sqlite") == ("1 = 1", [])


def test_text_search_takes_its_wildcards_literally_and_ignores_case_on_postgresql() -> None:
    clause, params = where(Filters(text="50%_off"), Viewer(name="r", admin=True), "postgresql")
    assert clause == "text ILIKE ? ESCAPE '\\'"
    assert params == ["%50\\%\\_off%"]


def test_history_urls() -> None:
    assert dialect_of("sqlite:///history.db") is SQLITE
    assert dialect_of("postgresql://u:p@db/smsgate") is POSTGRESQL
    assert dialect_of("postgres://db/smsgate") is POSTGRESQL
    assert sqlite_path("sqlite:///rel/h.db").as_posix() == "rel/h.db"
    assert sqlite_path("sqlite:////var/lib/h.db").as_posix() == "/var/lib/h.db"
    with pytest.raises(StoreError, match="mysql"):
        dialect_of("mysql://db/x")
    with pytest.raises(StoreError, match="sqlite:///relative"):
        sqlite_path("sqlite://h.db")
    assert redacted("postgresql://smsgate:s3cret@db:5432/x") == "postgresql://smsgate:***@db:5432/x"


def test_the_history_url_comes_from_the_environment_too() -> None:
    config = load(None, env={"SMSGATE_HISTORY_URL": "postgresql://db/smsgate"})
    assert config.history.url == "postgresql://db/smsgate"
    assert config.history.retention_days == 90


def test_a_result_nobody_could_tell_shows_as_unknown_in_the_timeline() -> None:
    """Part 1 went out, part 2's PDU was written and never answered: the timeline says
    sent, then unknown for the part and for the message, never failed."""
    at = micros(dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC))
    detail = json.dumps(
        {
            "status": "unknown",
            "reason": "outcome unknown: modem closed",
            "parts": [
                {"sequence": 1, "reference": 3, "error": None},
                {"sequence": 2, "reference": None, "error": "outcome unknown: modem closed"},
            ],
        }
    )
    steps = timeline_steps([(at, "result", "lte-1", detail)])
    assert [(s.step, s.part) for s in steps] == [("sent", 1), ("unknown", 2), ("unknown", None)]
    assert steps[-1].reason == "outcome unknown: modem closed"
