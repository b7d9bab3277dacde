"""The ledger's protocol over a store: matching across restarts and agents, one report per
message, expiry and unmatched reports decided once. The store is an in-memory bucket with
revisions (the JetStream one is tested in tests/reliability/test_report_ledger.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smsgate import contracts
from smsgate.backoff import Backoff
from smsgate.contracts import DeliveryState
from smsgate_agent import ledger as ledger_module
from smsgate_agent import reports, send_path
from smsgate_agent.delivery_reports import DeliveryReports
from smsgate_agent.ledger import Conflict, Ledger, LedgerSettings
from smsgate_agent.reports import Sim

from tests.unit.test_reports import SIM, T0, TO, job, parts, report

SETTINGS = LedgerSettings(
    timeout=dt.timedelta(hours=73), unmatched_after=dt.timedelta(minutes=10), sweep=30.0
)
T = TypeVar("T")
MOVED = Sim(port="lte-9", port_number=9, imsi=SIM.imsi)  # the same SIM in another port


def _settled(outcome: T | Exception) -> Awaitable[T]:
    """A write's outcome, known already (the memory store applies writes as they are sent)."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
    return future


class MemoryStore:
    """Values with revisions, compare-and-set like a KV bucket."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        self.reads: list[str] = []  # every key read, in order
        self.writes: list[str] = []  # every key written or deleted, in order

    async def get(self, key: str) -> tuple[bytes, int] | None:
        self.reads.append(key)
        value = self.values.get(key)
        await asyncio.sleep(0)  # the answer's way back: others may run meanwhile
        return value

    async def put(self, key: str, value: bytes) -> int:
        self.writes.append(key)
        self.revision += 1
        self.values[key] = (value, self.revision)
        return self.revision

    async def put_soon(self, key: str, value: bytes) -> Awaitable[int]:
        return _settled(await self.put(key, value))  # applied in the order sent, as NATS does

    async def create(self, key: str, value: bytes) -> int:
        if key in self.values:
            raise Conflict(key)
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        await asyncio.sleep(0)
        if self.values.get(key, (b"", 0))[1] != revision:
            raise Conflict(key)
        return await self.put(key, value)

    async def delete(self, key: str, revision: int | None = None) -> None:
        if revision is not None and self.values.get(key, (b"", 0))[1] != revision:
            raise Conflict(key)
        self.writes.append(key)
        self.values.pop(key, None)

    async def keys(self, pattern: str) -> list[str]:
        keys = [key for key in self.values if _matches(pattern.split("."), key.split("."))]
        await asyncio.sleep(0)
        return keys

    def under(self, prefix: str) -> list[str]:
        return [key for key in self.values if key.startswith(prefix)]


def _matches(pattern: list[str], tokens: list[str]) -> bool:
    if pattern and pattern[0] == ">":
        return bool(tokens)
    if not pattern or not tokens:
        return not pattern and not tokens
    return pattern[0] in ("*", tokens[0]) and _matches(pattern[1:], tokens[1:])


class Bus:
    """Events and statuses as published; the stream's duplicate window by event id."""

    agent = "agent-a"

    def __init__(self) -> None:
        self.events: list[contracts.DeliveryReport] = []
        self.statuses: dict[str, contracts.MessageStatus] = {}
        self.seen: set[str] = set()
        self.published: list[str] = []  # every publish, duplicates too

    async def event(self, event: contracts.Event) -> None:
        assert isinstance(event, contracts.DeliveryReport)
        self.published.append(event.event_id)
        if event.event_id not in self.seen:
            self.seen.add(event.event_id)
            self.events.append(event)

    async def event_and_status(
        self, event: contracts.Event, status: contracts.MessageStatus
    ) -> tuple[Exception | None, Exception | None]:
        await self.event(event)
        self.statuses[status.id] = status
        return None, None

    async def status(self, message_id: str) -> contracts.MessageStatus | None:
        return self.statuses.get(message_id)

    def states(self) -> dict[str, DeliveryState]:
        return {event.id: event.state for event in self.events}


class Stalled:
    """An agent's way to the bus that hangs on every publish: the agent is caught between
    deciding a report and publishing it (slow, cut off, or about to die)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.agent = bus.agent
        self.attempts = 0

    async def event(self, event: contracts.Event) -> None:
        self.attempts += 1
        await asyncio.Event().wait()

    async def event_and_status(
        self, event: contracts.Event, status: contracts.MessageStatus
    ) -> tuple[Exception | None, Exception | None]:
        await self.event(event)
        return None, None

    async def status(self, message_id: str) -> contracts.MessageStatus | None:
        return await self.bus.status(message_id)


async def stalled_sweep(store: MemoryStore, bus: Bus, clock: Clock) -> asyncio.Task[None]:
    """An agent's sweep that decided something and hangs publishing it."""
    stalled = Stalled(bus)
    task = asyncio.create_task(Ledger(store, stalled, SETTINGS, clock=clock).sweep())
    for _ in range(100):
        if stalled.attempts:
            return task
        await asyncio.sleep(0)
    raise AssertionError("the sweep published nothing")


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def agent(store: MemoryStore, bus: Bus, clock: Clock) -> Ledger:
    """A fresh agent process: nothing in memory but what the store holds."""
    return Ledger(store, bus, SETTINGS, clock=clock)


async def send(ledger: Ledger, message_id: str, *refs: int, sim: Sim = SIM, to: str = TO) -> None:
    record = reports.awaiting(
        job(message_id, to), parts(*refs), sim, ledger.clock(), SETTINGS.timeout
    )
    assert record is not None
    await ledger.record(record)


def ledger_empty(store: MemoryStore) -> bool:
    """No record, no waiting report, no part on file: the slots hold only entries of
    records that are gone (their removal rides on the slot's next filing)."""
    return not store.under("m.") and not store.under("w.") and not filed(store)


def filed(store: MemoryStore) -> list[str]:
    """The record keys the slots name that are still records."""
    named = [
        entry.record
        for key, (value, _) in store.values.items()
        if key.startswith("s.")
        for entry in msgspec.json.decode(value, type=list[reports.SlotEntry])
    ]
    return [key for key in named if key in store.values]


def slot(store: MemoryStore, reference: int, sim: Sim = SIM) -> list[str]:
    """The message ids filed in one slot."""
    value, _ = store.values[f"s.{sim.key}.{reference}"]
    return [
        e.record.rsplit(".", 1)[1] for e in msgspec.json.decode(value, type=list[reports.SlotEntry])
    ]


async def test_report_after_a_restart_is_matched_with_the_callers_fields() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 7)
    clock.advance(hours=2)
    await agent(store, bus, clock).take(report(7, at=T0), SIM)  # the restarted agent
    [event] = bus.events
    assert (event.id, event.caller_id, event.user, event.state) == (
        "m1",
        "c-m1",
        "alice",
        DeliveryState.DELIVERED,
    )
    assert bus.statuses["m1"].state is contracts.MessageState.DELIVERED
    assert ledger_empty(store)


async def test_a_report_for_a_message_whose_outcome_is_unknown_tells_the_truth() -> None:
    """Sent and on record, but its agent was lost before its result went out: another
    agent decided `unknown` (`interrupted`). The report that comes later still matches,
    is published, and the stored status says what became of the message."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 7)
    now = clock()
    bus.statuses["m1"] = contracts.MessageStatus(
        id="m1",
        to=TO,
        state=contracts.MessageState.UNKNOWN,
        reason="interrupted",
        created=now,
        updated=now,
    )
    clock.advance(minutes=20)
    await agent(store, bus, clock).take(report(7, at=T0), SIM)
    [event] = bus.events
    assert (event.id, event.state) == ("m1", DeliveryState.DELIVERED)
    assert bus.statuses["m1"].state is contracts.MessageState.DELIVERED
    assert ledger_empty(store)


async def test_three_parts_straddling_restarts_give_one_report() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 10, 11, 12)
    for mr in (12, 10):
        clock.advance(minutes=1)
        await agent(store, bus, clock).take(report(mr), SIM)
        assert bus.events == []
    await agent(store, bus, clock).take(report(11), MOVED)  # and the SIM moved meanwhile
    [event] = bus.events
    assert (event.id, event.state, event.part_count, event.port, event.report_port) == (
        "m1",
        DeliveryState.DELIVERED,
        3,
        "lte-1",
        "lte-9",
    )
    assert ledger_empty(store)


async def test_a_report_that_overtakes_its_record_waits_and_then_matches() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await ledger.take(report(5), SIM)
    assert bus.events == []
    assert len(store.under("w.")) == 1
    await send(ledger, "m1", 5)
    await ledger.retry_parked(SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED}
    assert ledger_empty(store)


async def test_a_parked_report_is_matched_by_another_agents_sweep() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await agent(store, bus, clock).take(report(5), MOVED)  # read on the SIM's new port
    await send(agent(store, bus, clock), "m1", 5)  # the old port's record lands late
    await agent(store, bus, clock).sweep()
    assert bus.states() == {"m1": DeliveryState.DELIVERED}
    assert ledger_empty(store)


async def test_an_unknown_report_waits_its_time_then_is_published_unmatched_once() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await ledger.take(report(99, 0x41), SIM)
    clock.advance(minutes=9)
    await ledger.sweep()
    assert bus.events == []
    clock.advance(minutes=1)
    await asyncio.gather(*(agent(store, bus, clock).sweep() for _ in range(3)))
    assert len(bus.published) == 1
    [event] = bus.events
    assert (event.state, event.reference, event.status_code, event.to) == (
        DeliveryState.UNMATCHED,
        99,
        0x41,
        TO,
    )
    assert event.caller_id is None
    assert event.id.startswith("r")
    assert ledger_empty(store)


async def test_a_silent_message_expires_once_however_many_agents_sweep() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1, 2)
    clock.advance(hours=72)
    await agent(store, bus, clock).sweep()
    assert bus.events == []
    clock.advance(hours=1, seconds=30)
    sweepers = [agent(store, bus, clock) for _ in range(4)]
    await asyncio.gather(*(s.sweep() for s in sweepers))
    await asyncio.gather(*(s.sweep() for s in sweepers))
    assert bus.published == ["m1:report"]  # one agent acted, not one event by dedup
    [event] = bus.events
    assert (event.id, event.state, event.reason) == (
        "m1",
        DeliveryState.EXPIRED,
        "no delivery report within 3d 1h",
    )
    assert bus.statuses["m1"].delivery is DeliveryState.EXPIRED
    assert ledger_empty(store)
    clock.advance(minutes=3)
    await sweepers[0].sweep()
    assert store.values == {k: v for k, v in store.values.items() if k.startswith("s.")}


async def test_a_claimed_unmatched_report_is_left_to_its_claimer_until_it_is_overdue() -> None:
    """Another agent's sweep while the claimer publishes must not publish it too (CI saw
    the same event twice); a claimer that never finishes is taken over."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await agent(store, bus, clock).take(report(99, 0x41), SIM)
    clock.advance(minutes=10)
    claimer = await stalled_sweep(store, bus, clock)
    await agent(store, bus, clock).sweep()
    assert bus.published == []
    clock.advance(seconds=2 * SETTINGS.sweep + 1)
    await agent(store, bus, clock).sweep()
    claimer.cancel()
    assert [(e.state, e.reference) for e in bus.events] == [(DeliveryState.UNMATCHED, 99)]
    assert len(bus.published) == 1
    assert ledger_empty(store)


async def test_an_expiry_being_published_is_not_published_again_by_another_sweep() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1)
    clock.advance(hours=73, seconds=30)
    decider = await stalled_sweep(store, bus, clock)
    await agent(store, bus, clock).sweep()
    assert bus.published == []
    clock.advance(seconds=2 * SETTINGS.sweep + 1)
    await agent(store, bus, clock).sweep()
    decider.cancel()
    assert bus.published == ["m1:report"]
    assert bus.states() == {"m1": DeliveryState.EXPIRED}
    assert ledger_empty(store)


async def test_a_report_racing_the_expiry_sweep_gives_exactly_one_report() -> None:
    for _ in range(20):
        store, bus, clock = MemoryStore(), Bus(), Clock()
        await send(agent(store, bus, clock), "m1", 1)
        clock.advance(hours=73, seconds=30)
        await asyncio.gather(
            agent(store, bus, clock).sweep(), agent(store, bus, clock).take(report(1), SIM)
        )
        clock.advance(minutes=11)
        await agent(store, bus, clock).sweep()  # a report that lost goes out unmatched
        message_reports = [e for e in bus.events if e.id == "m1"]
        assert bus.published.count("m1:report") == 1
        assert message_reports[0].state in (DeliveryState.DELIVERED, DeliveryState.EXPIRED)
        assert ledger_empty(store)


async def test_a_failed_part_decides_at_once_and_the_others_are_absorbed() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1, 2, 3)
    await agent(store, bus, clock).take(report(2, 0x41), SIM)
    assert bus.states() == {"m1": DeliveryState.FAILED}
    for mr in (1, 3):
        await agent(store, bus, clock).take(report(mr), SIM)
    assert len(bus.events) == 1
    assert ledger_empty(store)


async def test_a_failed_part_whose_siblings_never_report_is_dropped_when_due() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1, 2)
    await agent(store, bus, clock).take(report(1, 0x41), SIM)
    clock.advance(hours=74)
    await agent(store, bus, clock).sweep()
    assert bus.states() == {"m1": DeliveryState.FAILED}
    assert ledger_empty(store)


async def test_a_decision_whose_agent_died_before_publishing_is_published_when_due() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 1)
    [key] = store.under("m.")
    value, revision = store.values[key]
    stored = msgspec.json.decode(value, type=reports.ReportRecord)
    decided, event = reports.apply(stored, 1, report(1), SIM, clock())
    await store.update(key, msgspec.json.encode(decided), revision)  # and then it died
    assert bus.events == []
    clock.advance(hours=74)
    await agent(store, bus, clock).sweep()
    assert bus.events == [event]
    assert ledger_empty(store)


async def test_a_decision_lost_in_a_crash_goes_out_when_the_report_is_read_again() -> None:
    """The agent stored the decision, then died before publishing it and before the modem
    deleted the report: the next agent reads the report again and publishes the decision."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1)
    [key] = store.under("m.")
    value, revision = store.values[key]
    stored = msgspec.json.decode(value, type=reports.ReportRecord)
    decided, event = reports.apply(stored, 1, report(1), SIM, clock())
    await store.update(key, msgspec.json.encode(decided), revision)
    await agent(store, bus, clock).take(report(1), SIM)
    assert bus.events == [event]
    assert ledger_empty(store)


async def test_an_unreadable_record_does_not_stop_the_sweep() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 1)
    await send(agent(store, bus, clock), "m2", 2)
    [first, _] = sorted(store.under("m."))
    await store.put(first, b"{not a record")
    clock.advance(hours=74)
    await agent(store, bus, clock).sweep()
    assert list(bus.states().values()) == [DeliveryState.EXPIRED]
    assert store.under("m.") == [first]  # kept for a person to look at


async def test_a_port_files_its_message_however_long_nats_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The result waits for the record: a record given up on would turn a sent message
    into an `interrupted` one when its job comes back."""
    monkeypatch.setattr(send_path, "Backoff", lambda first, longest: Backoff(0.0, 0.0))
    store, bus, clock = MemoryStore(), Bus(), Clock()
    refusals = 3
    put = store.put

    async def flaky_put(key: str, value: bytes) -> int:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise ConnectionError("nats away")
        return await put(key, value)

    monkeypatch.setattr(store, "put", flaky_put)
    port = DeliveryReports(agent(store, bus, clock), lambda: SIM)
    await port.expect(job("m1"), parts(5), T0.timestamp())
    assert refusals == 0
    assert len(store.under("m.")) == 1
    await port.on_report(report(5))
    assert bus.states() == {"m1": DeliveryState.DELIVERED}


async def test_a_report_finding_a_slot_before_its_record_waits_and_then_matches() -> None:
    """A record and its slot go out together: the record's write may fail after the slot's
    was taken. A report read then is parked like one that overtook both, and matched once
    the record is written again (what the port's retry does)."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    put_soon = store.put_soon
    failures = 1

    async def failing_put_soon(key: str, value: bytes) -> Awaitable[int]:
        nonlocal failures
        if key.startswith("m.") and failures:
            failures -= 1
            return _settled(ConnectionError("no ack from JetStream"))
        return await put_soon(key, value)

    store.put_soon = failing_put_soon  # type: ignore[method-assign]
    ledger = agent(store, bus, clock)
    with pytest.raises(ConnectionError):
        await send(ledger, "m1", 5)
    assert store.under("s.")
    assert not store.under("m.")
    await ledger.take(report(5), SIM)
    assert bus.events == []
    assert store.under("w.")
    await send(ledger, "m1", 5)
    await ledger.retry_parked(SIM)
    [event] = bus.events
    assert (event.id, event.state) == ("m1", DeliveryState.DELIVERED)
    assert ledger_empty(store)


async def test_a_settled_records_slot_is_cleared_whoever_deletes_it_first() -> None:
    """When another agent's sweep deleted a settled one-part record first, the report's
    side still owes its slot entry's removal, and pays it."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 6)
    delete = store.delete

    async def sweep_first(key: str, revision: int | None = None) -> None:
        if key.startswith("m."):
            await delete(key)  # another agent's sweep, just before
        await delete(key, revision)

    store.delete = sweep_first  # type: ignore[method-assign]
    await ledger.take(report(6), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED}
    assert ledger_empty(store)
    await ledger.flush()
    assert slot(store, 6) == []


async def test_a_temporary_status_is_consumed_and_the_final_one_decides() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 3)
    await ledger.take(report(3, 0x21), SIM)  # recipient busy, the SMSC tries again
    assert bus.events == []
    assert not store.under("w.")
    await ledger.take(report(3), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED}


async def test_a_report_read_twice_counts_once() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 3, 4)
    await ledger.take(report(3), SIM)
    await ledger.take(report(3), SIM)  # read again: parked, since its part reported
    await ledger.take(report(4), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED}


async def test_another_sims_report_with_the_same_mr_is_not_matched() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 3)
    await ledger.take(report(3), Sim(port="lte-1", imsi="001010000000002"))  # SIM swapped
    assert bus.events == []
    assert len(store.under("w.")) == 1


async def test_a_report_of_a_message_this_agent_sent_reads_only_its_slot() -> None:
    """The record it wrote is a hint: its compare-and-set confirms it, no read needed."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 4)
    store.reads.clear()
    await ledger.take(report(4), SIM)
    assert store.reads == [f"s.{SIM.key}.4"]
    assert bus.states() == {"m1": DeliveryState.DELIVERED}
    assert ledger_empty(store)
    # The MR comes round again: the emptied slot is filed into from its hint, unread.
    store.reads.clear()
    await send(ledger, "m2", 4)
    assert store.reads == []


async def test_a_record_hint_another_agent_moved_on_is_read_again() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    sender = agent(store, bus, clock)
    await send(sender, "m1", 20, 21)  # the sender's hint: both parts pending
    await agent(store, bus, clock).take(report(20), MOVED)  # another agent: part 1
    await sender.take(report(21), SIM)  # its hint is stale: refused, read again
    [event] = bus.events
    assert (event.id, event.state, event.part) == ("m1", DeliveryState.DELIVERED, 2)
    assert ledger_empty(store)


async def test_a_slot_hint_another_agent_moved_on_is_read_again() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    first, second = agent(store, bus, clock), agent(store, bus, clock)
    await send(first, "m1", 30)
    await send(second, "m2", 30, to="+4915112345678")  # the SIM moved: same slot
    await send(first, "m3", 30, to="+4917000000003")  # its hint of the slot is stale
    slot = msgspec.json.decode(store.values[f"s.{SIM.key}.30"][0])
    assert sorted(entry[0].rsplit(".", 1)[1] for entry in slot) == ["m1", "m2", "m3"]


async def test_a_slot_hint_missing_a_part_is_read_before_nothing_is_dropped() -> None:
    """A hint that lacks the part to drop proves nothing: the slot is read again."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    sweeper = agent(store, bus, clock)
    await send(sweeper, "m0", 41)
    await sweeper.take(report(41), SIM)  # its hint of slot 41: empty
    await send(agent(store, bus, clock), "m1", 40, 41)  # filed there by another agent
    clock.advance(hours=74)
    await sweeper.sweep()
    assert bus.states() == {"m0": DeliveryState.DELIVERED, "m1": DeliveryState.EXPIRED}
    assert ledger_empty(store)


async def test_the_agent_keeps_nothing_per_message() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    for index in range(600):  # MRs wrap twice over
        await send(ledger, f"m{index}", index % 256)
        clock.advance(seconds=1)
        await ledger.take(report(index % 256, at=clock()), SIM)
    assert len(bus.events) == 600
    assert ledger_empty(store)
    assert ledger._parked == {}  # no report in memory
    assert len(ledger._records) == 0  # and no record: hints of slots only, bounded
    assert len(ledger._slots) <= 256
    assert len(ledger._owed) <= 256  # removals owed: one per slot at most
    assert len(ledger._owed_only) <= len(ledger._owed)


async def test_a_settled_messages_entry_leaves_its_slot_with_the_next_filing() -> None:
    """A report settles its message without a write of the slot: the entry's removal rides
    on the slot's next filing, one write instead of two."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 4)
    store.writes.clear()
    await ledger.take(report(4), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED}
    assert [key[:2] for key in store.writes] == ["m.", "m."]  # decided, deleted
    assert slot(store, 4) == ["m1"]  # its record gone: owed
    store.writes.clear()
    store.reads.clear()
    await send(ledger, "m2", 4)
    assert [key[:2] for key in store.writes] == ["m.", "s."]
    assert store.reads == []
    assert slot(store, 4) == ["m2"]
    assert ledger._owed == {}


async def test_a_slot_that_held_only_settled_entries_is_filed_unread_without_its_hint() -> None:
    """An agent with more SIMs than slot hints: by the time the MR comes round, the hint
    is gone. The revision at which the slot held nothing but settled entries is enough to
    file into it: one write, no read."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 4)
    await ledger.take(report(4), SIM)
    ledger._slots = ledger_module.Hints(ledger_module.SLOT_HINTS)  # evicted meanwhile
    store.reads.clear()
    store.writes.clear()
    await send(ledger, "m2", 4)
    assert store.reads == []
    assert [key[:2] for key in store.writes] == ["m.", "s."]
    assert slot(store, 4) == ["m2"]
    assert ledger._owed == {}
    assert ledger._owed_only == {}


async def test_a_slot_written_by_another_agent_since_is_read_before_it_is_filed() -> None:
    """The revision a filing starts from is confirmed by its compare-and-set: another
    agent's part filed there meanwhile (the SIM was elsewhere) is kept."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 4)
    await ledger.take(report(4), SIM)
    await send(agent(store, bus, clock), "m2", 4, to="+4915112345678")
    ledger._slots = ledger_module.Hints(ledger_module.SLOT_HINTS)
    await send(ledger, "m3", 4)
    assert slot(store, 4) == ["m2", "m3"]
    await ledger.take(report(4, to="+4915112345678"), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED, "m2": DeliveryState.DELIVERED}


async def test_a_report_read_again_passes_over_its_settled_message_unread() -> None:
    """The same report read again (the agent stopped before the modem deleted it) finds
    the entry this agent owes a removal: passed over without reading the record, and
    kept waiting as it was when the entry was removed at once."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    await send(ledger, "m1", 4)
    await ledger.take(report(4), SIM)
    store.reads.clear()
    await ledger.take(report(4), SIM)
    assert store.reads == [f"s.{SIM.key}.4"]
    assert len(bus.published) == 1
    assert len(store.under("w.")) == 1


async def test_an_entry_a_crash_left_behind_is_dropped_when_a_report_chooses_it() -> None:
    """An agent died owing a removal: the entry of its settled message stays in the slot.
    A report that chooses it (the SMSC's clock is off, so the oldest part wins) finds no
    record, drops the entry and matches the part that is waiting."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    crashed = agent(store, bus, clock)
    await send(crashed, "m1", 7)
    await crashed.take(report(7), SIM)  # and then it died, owing slot 7
    clock.advance(minutes=5)
    restarted = agent(store, bus, clock)
    await send(restarted, "m2", 7)
    assert slot(store, 7) == ["m1", "m2"]
    await restarted.take(report(7, at=clock() + dt.timedelta(hours=3)), SIM)
    assert bus.states() == {"m1": DeliveryState.DELIVERED, "m2": DeliveryState.DELIVERED}
    assert len(bus.published) == 2
    await restarted.flush()
    assert slot(store, 7) == []
    assert ledger_empty(store)


async def test_removals_owed_past_the_bound_are_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger_module, "OWED_SLOTS", 2)
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    for index, mr in enumerate((10, 11, 12)):
        await send(ledger, f"m{index}", mr)
        await ledger.take(report(mr), SIM)
    assert (slot(store, 10), slot(store, 11), slot(store, 12)) == ([], ["m1"], ["m2"])
    assert sorted(ledger._owed) == [f"s.{SIM.key}.11", f"s.{SIM.key}.12"]
    await ledger.flush()
    assert (slot(store, 11), slot(store, 12)) == ([], [])
    assert ledger._owed == {}


async def test_the_agent_stopping_writes_every_removal_it_owes() -> None:
    store, bus, clock = MemoryStore(), Bus(), Clock()
    ledger = agent(store, bus, clock)
    for mr in range(300):  # more than are written at once
        await send(ledger, f"m{mr}", mr % 256, to=f"+49176123{mr:05d}")
        await ledger.take(report(mr % 256, to=f"+49176123{mr:05d}"), SIM)
    assert len(ledger._owed) == 256
    await ledger.flush()
    assert ledger._owed == {}
    assert all(slot(store, mr) == [] for mr in range(256))


async def test_an_expired_messages_entry_is_removed_at_once() -> None:
    """The sweep expires messages of any SIM, whose slots it seldom files into: it owes
    nothing."""
    store, bus, clock = MemoryStore(), Bus(), Clock()
    await send(agent(store, bus, clock), "m1", 9)
    clock.advance(hours=74)
    sweeper = agent(store, bus, clock)
    await sweeper.sweep()
    assert bus.states() == {"m1": DeliveryState.EXPIRED}
    assert slot(store, 9) == []
    assert sweeper._owed == {}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=30),
    st.randoms(use_true_random=False),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=1, max_value=5),
)
def test_every_message_decided_exactly_once(
    sizes: list[int], rng: random.Random, first_mr: int, restarts: int
) -> None:
    """Many messages to one number, MRs wrapping, reports in any order, read by agents that
    restart: one report for each message."""

    async def run() -> None:
        store, bus, clock = MemoryStore(), Bus(), Clock()
        mr, sent = first_mr, list[tuple[dt.datetime, int]]()
        for index, size in enumerate(sizes):
            refs = [(mr + i) % 256 for i in range(size)]
            mr = (mr + size) % 256
            await send(agent(store, bus, clock), f"m{index}", *refs)
            sent.extend((clock(), ref) for ref in refs)
            clock.advance(seconds=30)
        rng.shuffle(sent)
        ledgers = [agent(store, bus, clock) for _ in range(restarts)]
        for at, ref in sent:
            await rng.choice(ledgers).take(report(ref, at=at), SIM)
        assert sorted(bus.states()) == sorted(f"m{i}" for i in range(len(sizes)))
        assert set(bus.states().values()) == {DeliveryState.DELIVERED}
        assert ledger_empty(store)

    asyncio.run(run())
