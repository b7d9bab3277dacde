"""The history fold's statements on SQLite: a row's Nones are written as NULL in the
statement, not bound (binding a None costs CPython's sqlite3 an adapter lookup)."""

from __future__ import annotations

import sqlite3

from smsgate.history import schema
from smsgate.history.database import SQLITE, Session
from smsgate_history.ingest import NO_NULLS, OUT_NAMES, runs_by_nulls
from smsgate_history.ingest import _upsert as upsert


def test_rows_go_in_runs_with_none_in_the_same_places_in_their_order_without_their_nones() -> None:
    rows = [
        ("a", None, 1),
        ("b", None, 2),
        ("c", "x", None),
        ("d", None, 3),  # the first run's places again: a run of its own, in its place
        (None, None, None),
        ("e", "y", 4),
    ]
    assert list(runs_by_nulls(rows)) == [
        ((False, True, False), [("a", 1), ("b", 2)]),
        ((False, False, True), [("c", "x")]),
        ((False, True, False), [("d", 3)]),
        ((True, True, True), [()]),
        ((False, False, False), [("e", "y", 4)]),
    ]
    assert list(runs_by_nulls([])) == []


def test_a_run_of_one_value_gives_rows_of_one_value() -> None:
    assert list(runs_by_nulls([(None, 7), (None, 8)])) == [((True, False), [(7,), (8,)])]


def test_the_upsert_writes_null_where_a_run_has_none_and_binds_the_rest() -> None:
    given = {"id": "m", "created": 1, "updated": 1, "number": "+1", "number_key": "1"}
    given |= {"text": "hi", "user_name": "u", "state": "queued", "state_rank": 0}
    row = tuple(given.get(name) for name in OUT_NAMES)
    [(nulls, [bound])] = list(runs_by_nulls([row]))
    plain, written = upsert("queued", SQLITE, NO_NULLS), upsert("queued", SQLITE, nulls)
    assert (plain.count("?"), written.count("?"), len(bound)) == (22, 9, 9)
    assert written.replace("NULL", "?") == plain.replace("NULL", "?")
    raw = sqlite3.connect(":memory:")
    schema.create(Session(raw, SQLITE))
    raw.execute(written, bound)
    raw.execute(plain, ("m2", *row[1:]))
    got = raw.execute(f"SELECT * FROM {schema.MESSAGES} ORDER BY id").fetchall()
    assert got[0][1:] == got[1][1:]
