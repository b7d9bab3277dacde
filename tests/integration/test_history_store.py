"""The history tables on SQLite and on a real PostgreSQL: folding events in any order,
each once; search, pages, visibility, timelines, export and pruning."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from smsgate import contracts
from smsgate.contracts import (
    DeliveryReport,
    DeliveryState,
    InboundSms,
    MessageQueued,
    MessageSending,
    PartResult,
    SendResult,
    SendStatus,
)
from smsgate.embedded import EmbeddedPostgres
from smsgate.history import schema, search
from smsgate.history.database import Database, Session
from smsgate.history.search import BadFilter, Filters, Viewer
from smsgate_history import ingest, retention

from tests.history_fixtures import fresh_database

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
ADMIN = Viewer(name="root", admin=True)
IMSI = "460004372167365"


@pytest.fixture
async def db(history_url: str) -> AsyncIterator[Database]:
    database = Database(history_url, size=2)
    await database.run(schema.create)
    yield database
    await database.close()


def queued(
    mid: str,
    to: str,
    text: str,
    *,
    at: dt.datetime = T0,
    user: str = "alice",
    port: str | None = None,
) -> MessageQueued:
    return MessageQueued(
        event_id=f"{mid}:queued",
        id=mid,
        to=to,
        text=text,
        port=port,
        user=user,
        caller_id="c-" + mid,
        time=at,
    )


def sending(mid: str, to: str, *, at: dt.datetime, port: str = "lte-1") -> MessageSending:
    return MessageSending(
        event_id=f"{mid}:sending:1",
        port=port,
        port_number=1,
        imsi=IMSI,
        time=at,
        id=mid,
        to=to,
        agent="host-a",
        user="alice",
    )


def result(
    mid: str,
    to: str,
    *,
    at: dt.datetime,
    port: str = "lte-1",
    parts: int = 1,
    status: SendStatus = SendStatus.SENT,
    reason: str | None = None,
) -> SendResult:
    return SendResult(
        event_id=f"{mid}:result",
        port=port,
        port_number=1,
        imsi=IMSI,
        time=at,
        id=mid,
        to=to,
        status=status,
        reason=reason,
        user="alice",
        parts=[PartResult(sequence=i + 1, reference=40 + i) for i in range(parts)],
    )


def report(
    mid: str, to: str, *, at: dt.datetime, state: DeliveryState = DeliveryState.DELIVERED
) -> DeliveryReport:
    return DeliveryReport(
        event_id=f"{mid}:report",
        port="lte-1",
        time=at,
        id=mid,
        to=to,
        state=state,
        reason="Message received on handset",
        user="alice",
    )


def inbound(
    mid: str, sender: str, text: str, *, at: dt.datetime = T0, port: str = "lte-1"
) -> InboundSms:
    return InboundSms(
        event_id=f"{mid}:inbound",
        port=port,
        port_number=1,
        imsi=IMSI,
        time=at,
        id=mid,
        sender=sender,
        text=text,
        smsc_time=at,
    )


def life(mid: str, to: str = "+15551230001", text: str = "hello") -> list[object]:
    """One message's events: queued, sending, two parts sent, delivered."""
    return [
        queued(mid, to, text),
        sending(mid, to, at=T0 + dt.timedelta(seconds=1)),
        result(mid, to, at=T0 + dt.timedelta(seconds=3), parts=2),
        report(mid, to, at=T0 + dt.timedelta(seconds=9)),
    ]


async def fold(db: Database, *events: object) -> list[bool]:
    # Through the wire form: what the store reads is what the services publish.
    decoded = [ingest.decode(contracts.encode(e)) for e in events]
    return await db.run(lambda s: [ingest.apply(s, e) for e in decoded])


async def test_messages_by_id_are_read_past_one_querys_worth_of_ids(db: Database) -> None:
    count = search.IDS_PER_QUERY + 3
    await fold(db, *(queued(f"b{n}", "+1555", "x") for n in range(count)))
    await fold(db, inbound("in1", "+1666", "hi"))
    asked = [f"b{n}" for n in range(count)] + ["b0", "nobody", "in1"]
    found = await search.messages(db, asked)
    assert sorted(found) == sorted({f"b{n}" for n in range(count)} | {"in1"})
    assert (found["b7"].number, found["b7"].caller_id, found["in1"].direction) == (
        "+1555",
        "c-b7",
        "in",
    )
    assert await search.messages(db, []) == {}


async def test_a_message_life_becomes_one_row_and_a_timeline(db: Database) -> None:
    assert await fold(db, *life("m1")) == [True, True, True, True]
    found = await search.lookup(db, "m1", ADMIN)
    assert found is not None
    row, timeline = found
    assert (row.direction, row.number, row.text, row.state) == (
        "out",
        "+15551230001",
        "hello",
        "delivered",
    )
    assert (row.user, row.caller_id, row.port, row.sim, row.agent) == (
        "alice",
        "c-m1",
        "lte-1",
        IMSI,
        "host-a",
    )
    assert (row.parts, row.report, row.created) == (2, "delivered", T0)
    assert [(s.step, s.part, s.reference) for s in timeline] == [
        ("queued", None, None),
        ("sending", None, None),
        ("sent", 1, 40),
        ("sent", 2, 41),
        ("delivered", None, None),
    ]
    assert timeline[-1].reason == "Message received on handset"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_events_in_any_order_give_the_same_row(db: Database, seed: int) -> None:
    events = life("m1")
    random.Random(seed).shuffle(events)
    await fold(db, *events)
    found = await search.lookup(db, "m1", ADMIN)
    assert found is not None
    row, timeline = found
    assert (row.state, row.text, row.created, row.port, row.parts) == (
        "delivered",
        "hello",
        T0,
        "lte-1",
        2,
    )
    assert [s.step for s in timeline] == ["queued", "sending", "sent", "sent", "delivered"]


async def test_an_event_seen_twice_changes_nothing(db: Database) -> None:
    await fold(db, *life("m1"))
    assert await fold(db, *life("m1")) == [False] * 4
    # A late copy of `sending` must not move a delivered message back either.
    assert await fold(db, sending("m1", "+15551230001", at=T0)) == [False]
    found = await search.lookup(db, "m1", ADMIN)
    assert found is not None
    assert found[0].state == "delivered"
    assert len(found[1]) == 5


async def test_failures_and_report_states_are_kept_as_given(db: Database) -> None:
    await fold(
        db,
        queued("f1", "+1555", "x"),
        result("f1", "+1555", at=T0, status=SendStatus.FAILED, reason="+CMS ERROR: 38", parts=0),
        queued("u1", "+1556", "y"),
        result("u1", "+1556", at=T0),
        report("u1", "+1556", at=T0, state=DeliveryState.FAILED),
        queued("e1", "+1557", "z"),
        result("e1", "+1557", at=T0),
        report("e1", "+1557", at=T0, state=DeliveryState.EXPIRED),
    )
    states = {
        m.id: (m.state, m.reason, m.report)
        for m in (await search.page(db, Filters(), ADMIN)).messages
    }
    assert states == {
        "f1": ("failed", "+CMS ERROR: 38", None),
        "u1": ("undelivered", None, "failed"),
        "e1": ("expired", None, "expired"),
    }
    found = await search.lookup(db, "f1", ADMIN)
    assert found is not None
    assert [(s.step, s.reason) for s in found[1]] == [
        ("queued", None),
        ("failed", "+CMS ERROR: 38"),
    ]


async def test_an_unknown_outcome_is_kept_searchable_and_a_later_report_settles_it(
    db: Database,
) -> None:
    """`unknown` (its holder lost): its own state, found by `state=unknown`; a delivery
    report that comes later tells what became of it (rank 3 over the result's 2)."""
    lost = result("k1", "+1555", at=T0, status=SendStatus.UNKNOWN, reason="interrupted", parts=0)
    await fold(db, queued("k1", "+1555", "x"), lost, queued("k2", "+1556", "y"))
    await fold(db, result("k2", "+1556", at=T0, status=SendStatus.UNKNOWN, reason="interrupted"))
    found = await search.page(db, Filters(states=["unknown"]), ADMIN)
    assert {(m.id, m.state, m.reason) for m in found.messages} == {
        ("k1", "unknown", "interrupted"),
        ("k2", "unknown", "interrupted"),
    }
    timeline = await search.lookup(db, "k1", ADMIN)
    assert timeline is not None
    assert [(s.step, s.reason) for s in timeline[1]] == [
        ("queued", None),
        ("unknown", "interrupted"),
    ]
    await fold(db, report("k2", "+1556", at=T0))
    settled = await search.lookup(db, "k2", ADMIN)
    assert settled is not None
    assert (settled[0].state, settled[0].report) == ("delivered", "delivered")


async def test_report_fields_and_states_this_version_does_not_know_land_as_given(
    db: Database,
) -> None:
    # A report as the delivery-report ledger publishes it: an `unmatched` state, the TP-MR
    # and part, and the SIM by ICCID; plus a field no version has yet.
    event = msgspec.json.encode(
        {
            "type": "report",
            "event_id": "r1:report",
            "port": "lte-1",
            "time": T0.isoformat(),
            "id": "r0123456789abcdef0123",
            "to": "+1555",
            "state": "unmatched",
            "reference": 77,
            "part": 2,
            "part_count": 3,
            "iccid": "8949000000000000001",
            "report_port": "lte-2",
            "sent_time": T0.isoformat(),
            "future_field": [1, 2],
        }
    )
    assert await db.run(lambda s: ingest.apply(s, ingest.decode(event)))
    found = await search.lookup(db, "r0123456789abcdef0123", ADMIN)
    assert found is not None
    row, timeline = found
    assert (row.state, row.report, row.sim, row.user) == (
        "unmatched",
        "unmatched",
        "8949000000000000001",
        "",
    )
    assert [(t.step, t.part, t.reference) for t in timeline] == [("unmatched", 2, 77)]
    # Nobody's message: only an admin sees it.
    assert await search.lookup(db, "r0123456789abcdef0123", Viewer(name="alice")) is None


async def test_inbound_messages_are_kept_and_listed_as_in(db: Database) -> None:
    await fold(db, inbound("i1", "+8613800000001", "Your bill is ready"), *life("m1"))
    page = await search.page(db, Filters(direction="in"), ADMIN)
    assert [(m.id, m.number, m.text, m.state) for m in page.messages] == [
        ("i1", "+8613800000001", "Your bill is ready", "received")
    ]


async def test_every_filter_narrows_the_search(db: Database) -> None:
    await fold(
        db,
        queued("a", "+49 151 000001", "Invoice 42", at=T0, user="alice"),
        sending("a", "+49 151 000001", at=T0, port="lte-1"),
        queued("b", "+15550002", "hello there", at=T0 + dt.timedelta(minutes=1), user="bob"),
        result("b", "+15550002", at=T0 + dt.timedelta(minutes=2), port="lte-2"),
        inbound(
            "c", "+49151000001", "reply to invoice", at=T0 + dt.timedelta(minutes=3), port="lte-2"
        ),
    )

    async def ids(**filters: object) -> list[str]:
        page = await search.page(db, msgspec.convert(filters, Filters), ADMIN)
        return [m.id for m in page.messages]

    assert await ids() == ["c", "b", "a"]
    assert await ids(number="+4915100 0001") == ["c", "a"]  # either side, however written
    assert await ids(direction="out") == ["b", "a"]
    assert await ids(ports=["lte-2"]) == ["c", "b"]
    assert await ids(sim=IMSI) == ["c", "b", "a"]
    assert await ids(user="bob") == ["b"]
    assert await ids(states=["sent", "sending"]) == ["b", "a"]
    assert await ids(since=T0 + dt.timedelta(minutes=1)) == ["c", "b"]
    assert await ids(until=T0 + dt.timedelta(minutes=1)) == ["a"]
    assert await ids(text="INVOICE") == ["c", "a"]
    assert await ids(text="50%") == []  # LIKE wildcards in the text are literals
    assert await ids(text="invoice", direction="in") == ["c"]


async def test_a_user_sees_their_own_messages_and_the_inbound_of_their_ports(db: Database) -> None:
    await fold(
        db,
        queued("a", "+1", "mine", user="alice"),
        queued("b", "+2", "theirs", user="bob"),
        inbound("c", "+3", "to lte-1", port="lte-1"),
        inbound("d", "+4", "to lte-9", port="lte-9"),
    )

    async def seen(viewer: Viewer) -> set[str]:
        return {m.id for m in (await search.page(db, Filters(), viewer)).messages}

    assert await seen(ADMIN) == {"a", "b", "c", "d"}
    assert await seen(Viewer(name="alice")) == {"a", "c", "d"}
    assert await seen(Viewer(name="alice", ports=["lte-1"])) == {"a", "c"}
    assert await seen(Viewer(name="bob", ports=["lte-?"])) == {"b", "c", "d"}
    assert await seen(Viewer(name="bob", ports=[])) == {"b"}
    assert await search.lookup(db, "b", Viewer(name="alice")) is None
    assert await search.lookup(db, "b", Viewer(name="bob")) is not None


async def test_cursor_pages_walk_everything_once_newest_first(db: Database) -> None:
    events = [
        queued(f"m{i:03}", "+1555", f"n{i}", at=T0 + dt.timedelta(seconds=i // 3))
        for i in range(47)
    ]
    await fold(db, *events)
    seen: list[str] = []
    cursor = None
    while True:
        page = await search.page(db, Filters(), ADMIN, limit=10, cursor=cursor)
        seen.extend(m.id for m in page.messages)
        if page.next is None:
            break
        cursor = page.next
    expected = sorted((e.time, e.id) for e in events)[::-1]
    assert seen == [mid for _, mid in expected]


async def test_a_bad_cursor_or_limit_is_refused_by_name(db: Database) -> None:
    with pytest.raises(BadFilter, match="cursor"):
        await search.page(db, Filters(), ADMIN, cursor="not-a-cursor")
    with pytest.raises(BadFilter, match="limit"):
        await search.page(db, Filters(), ADMIN, limit=0)


async def test_export_streams_every_match_in_batches(db: Database) -> None:
    await fold(
        db,
        *[queued(f"m{i:04}", "+1555", "t", at=T0 + dt.timedelta(seconds=i)) for i in range(2500)],
    )
    batches = [b async for b in search.export(db, Filters(), ADMIN, batch=1000)]
    assert [len(b) for b in batches] == [1000, 1000, 500]
    ids = [m.id for b in batches for m in b]
    assert ids == [f"m{i:04}" for i in range(2499, -1, -1)]


async def test_an_export_left_unfinished_gives_its_connection_back(db: Database) -> None:
    await fold(db, *[queued(f"m{i}", "+1555", "t") for i in range(30)])
    for _ in range(3):  # more abandoned exports than the pool has connections
        batches = search.export(db, Filters(), ADMIN, batch=10)
        async for _batch in batches:
            break
        await batches.aclose()
    assert len((await search.page(db, Filters(), ADMIN)).messages) == 30


async def test_pruning_removes_old_messages_with_their_timelines(db: Database) -> None:
    old = T0 - dt.timedelta(days=40)
    await fold(db, queued("old", "+1", "x", at=old), result("old", "+1", at=old), *life("new"))
    before = retention.cutoff(T0, 30)
    assert before is not None
    assert await retention.prune(db, before) > 0
    assert await search.lookup(db, "old", ADMIN) is None
    assert await search.lookup(db, "new", ADMIN) is not None
    leftovers = await db.run(
        lambda s: s.all(f"SELECT COUNT(*) FROM {schema.EVENTS} WHERE message_id = 'old'")
    )
    assert leftovers == [(0,)]
    assert retention.cutoff(T0, 0) is None  # 0 days: keep everything


async def test_a_batch_with_repeats_and_any_order_folds_like_one_at_a_time(db: Database) -> None:
    events = [e for mid in ("b1", "b2", "b3") for e in life(mid, to=f"+1555{mid}")]
    events += events[:4]  # a redelivered stretch inside the same batch
    random.Random(5).shuffle(events)
    decoded = [ingest.decode(contracts.encode(e)) for e in events]
    assert await db.run(lambda s: ingest.apply_batch(s, decoded)) == 12
    assert await db.run(lambda s: ingest.apply_batch(s, decoded)) == 0
    for mid in ("b1", "b2", "b3"):
        found = await search.lookup(db, mid, ADMIN)
        assert found is not None
        assert (found[0].state, found[0].text, found[0].parts) == ("delivered", "hello", 2)
        assert [s.step for s in found[1]] == ["queued", "sending", "sent", "sent", "delivered"]
    parts = await db.run(lambda s: s.all(f"SELECT COUNT(*) FROM {schema.PARTS}"))
    assert parts == [(6,)]


def _one_message(mid: str, steps: str) -> list[object]:
    """Events of message `mid` by letter: Q queued, P queued pinned to lte-2, S sending
    on lte-1, T its second `sending` on lte-3 (a retry), R result, D report."""
    to = "+15551230009"
    at = {c: T0 + dt.timedelta(seconds=i) for i, c in enumerate("QPSTRD")}
    made: dict[str, Callable[[], object]] = {
        "Q": lambda: msgspec.structs.replace(queued(mid, to, "hi", at=at["Q"]), caller_id="c"),
        "P": lambda: msgspec.structs.replace(
            queued(mid, to, "hi", at=at["P"], port="lte-2"), caller_id="c"
        ),
        "S": lambda: sending(mid, to, at=at["S"]),
        "T": lambda: msgspec.structs.replace(
            sending(mid, to, at=at["T"], port="lte-3"), event_id=f"{mid}:sending:2"
        ),
        "R": lambda: result(mid, to, at=at["R"]),
        "D": lambda: report(mid, to, at=at["D"]),
    }
    return [made[c]() for c in steps]


Stored = tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]


async def _stored(db: Database, mid: str) -> Stored:
    """Everything the store holds of one message, its id left out."""
    columns = ", ".join(c for c in ingest.OUT_NAMES if c != "id")
    row = await db.run(
        lambda s: s.all(f"SELECT {columns} FROM {schema.MESSAGES} WHERE id = ?", (mid,))
    )
    steps = await db.run(
        lambda s: s.all(
            f"SELECT at, step, port, detail FROM {schema.EVENTS} WHERE message_id = ? "
            "ORDER BY at, step",
            (mid,),
        )
    )
    parts = await db.run(
        lambda s: s.all(
            f"SELECT sequence, reference, error, at FROM {schema.PARTS} WHERE message_id = ?",
            (mid,),
        )
    )
    return row, steps, parts


@pytest.mark.parametrize(
    ("before", "batch"),
    [
        ("", "QSRD"),  # a whole life in one batch (catching up)
        ("", "SQ"),  # the `sending` stored before its `queued`
        ("", "PS"),  # pinned to another port than the one that took it
        ("", "STQ"),  # two `sending` (a retry on another port), then the `queued`
        ("", "QST"),
        ("Q", "QS"),  # the `queued` again (redelivered) with its `sending`
        ("R", "QS"),  # after a rebuild: the result first
        ("D", "SQR"),  # the report first
        ("RD", "PS"),
        ("S", "QT"),
    ],
)
async def test_a_batch_of_one_message_events_ends_as_they_would_one_by_one(
    db: Database, before: str, batch: str
) -> None:
    # Reference: every event in its own batch, in the same order.
    for event in _one_message("one", before + batch):
        await fold(db, event)
    await fold(db, *_one_message("both", before))
    decoded = [ingest.decode(contracts.encode(e)) for e in _one_message("both", batch)]
    await db.run(lambda s: ingest.apply_batch(s, decoded))
    assert await _stored(db, "both") == await _stored(db, "one")
    row = await _stored(db, "one")
    assert row[0][0][ingest.OUT_NAMES.index("state") - 1] == _state_at_last(before + batch)


def _state_at_last(steps: str) -> str:
    """The state a message's events end in, whatever their order."""
    if "D" in steps:
        return "delivered"
    if "R" in steps:
        return "sent"
    return "sending" if "S" in steps or "T" in steps else "queued"


async def test_a_prune_can_be_taken_a_few_transactions_at_a_time(db: Database) -> None:
    old = T0 - dt.timedelta(days=40)
    events = [queued(f"o{i:04}", "+1", "x", at=old) for i in range(retention.BATCH + 500)]
    decoded = [ingest.decode(contracts.encode(e)) for e in events]
    await db.run(lambda s: ingest.apply_batch(s, decoded))
    before = retention.cutoff(T0, 30)
    assert before is not None
    assert await retention.prune(db, before, batches=1) == retention.BATCH
    assert len((await search.page(db, Filters(), ADMIN, limit=1000)).messages) == 500
    assert await retention.prune(db, before) == 500
    assert await retention.prune(db, before) == 0


SCHEMA_1_EVENTS = """CREATE TABLE smsgate_message_events (
    event_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    step TEXT NOT NULL,
    port TEXT,
    detail TEXT
)"""


async def test_a_store_of_schema_1_keeps_its_events_keyed_anew(history_url: str) -> None:
    # Schema 1 (this round's first): events keyed by their own id alone.
    database = Database(history_url)
    try:

        def schema_1(session: Session) -> None:
            session.execute(SCHEMA_1_EVENTS)
            session.execute("CREATE INDEX smsgate_message_events_at ON smsgate_message_events (at)")
            session.script(schema.TABLES)
            session.execute(f"INSERT INTO {schema.META} (key, value) VALUES ('schema', '1')")

        await database.run(schema_1)
        first = ingest.decode(contracts.encode(queued("m1", "+1555", "kept")))
        row = (first.event_id, "m1", 1, "queued", None, None)
        await database.run(
            lambda s: s.execute(
                f"INSERT INTO {schema.EVENTS} (event_id, message_id, at, step, port, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        )
        await database.run(schema.create)
        await database.run(schema.create)  # once brought up to date, nothing more to do
        version = await database.run(
            lambda s: s.one(f"SELECT value FROM {schema.META} WHERE key = 'schema'")
        )
        assert version == (str(schema.SCHEMA_VERSION),)
        # The event is still there: seen before, so not applied again.
        assert await database.run(lambda s: ingest.apply(s, first)) is False
        assert await fold(database, *life("m2")) == [True] * 4
        found = await search.lookup(database, "m2", ADMIN)
        assert found is not None
        assert [s.step for s in found[1]] == ["queued", "sending", "sent", "sent", "delivered"]
    finally:
        await database.close()


async def test_the_schema_once_there_waits_for_no_writer(postgres_server: EmbeddedPostgres) -> None:
    # Every API process makes sure of the schema on first use, while the store writes.
    # In PostgreSQL `CREATE INDEX IF NOT EXISTS` locks its table first even when the
    # index exists: it waited for the store's writes and deadlocked with them (the
    # store's transaction holds the events table and wants the messages table). SQLite
    # has one writer at a time: PostgreSQL only.
    history_url = fresh_database(postgres_server)
    store = Database(history_url, size=2, name="test")
    await store.run(schema.create)
    locked, release = threading.Event(), threading.Event()

    def writer(session: Session) -> None:
        session.execute(f"LOCK TABLE {schema.MESSAGES} IN ROW EXCLUSIVE MODE")
        session.execute(f"LOCK TABLE {schema.EVENTS} IN ROW EXCLUSIVE MODE")
        locked.set()
        release.wait(60)

    def create_again(session: Session) -> None:
        # Fails (LockNotAvailable) instead of waiting, should it need a table's lock.
        session.execute("SET LOCAL lock_timeout = '2s'")
        schema.create(session)

    writing = asyncio.create_task(store.run(writer))
    try:
        assert await asyncio.to_thread(locked.wait, 60)
        await store.run(create_again)
    finally:
        release.set()
        await writing
        await store.close()
