"""The report ledger's store on a real nats-server: reads through the agent's shared ack
inbox agree with nats-py's own KV calls, for values, revisions, absent and deleted keys."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from smsgate import bus, subjects
from smsgate.acks import AckPublisher
from smsgate_agent import reports
from smsgate_agent.ledger import Conflict, KvStore, Ledger

from tests.conftest import Bus
from tests.unit.test_ledger import SETTINGS, Clock, send
from tests.unit.test_ledger import Bus as ReportBus
from tests.unit.test_reports import SIM, report


@pytest.fixture
async def store(nats_bus: Bus) -> AsyncIterator[KvStore]:
    acks = AckPublisher(nats_bus.nc)
    await acks.start()
    yield KvStore(nats_bus.buckets.reports, nats_bus.js, acks)
    await acks.stop()


async def test_a_read_gives_the_value_and_revision_kv_get_gives(
    nats_bus: Bus, store: KvStore
) -> None:
    revision = await store.put("m.60.a", b'{"x":1}')
    await store.update("m.60.a", b'{"x":2}', revision)
    entry = await nats_bus.buckets.reports.get("m.60.a")
    assert await store.get("m.60.a") == (b'{"x":2}', entry.revision)
    assert entry.revision is not None
    assert entry.revision > revision


async def test_an_absent_or_deleted_key_reads_as_none(store: KvStore) -> None:
    assert await store.get("s.i1.7") is None
    revision = await store.create("s.i1.7", b"[]")
    assert await store.get("s.i1.7") == (b"[]", revision)
    await store.delete("s.i1.7", revision)
    assert await store.get("s.i1.7") is None
    # A deleted key can be created again; a live one cannot.
    again = await store.create("s.i1.7", b"[1]")
    assert await store.get("s.i1.7") == (b"[1]", again)
    with pytest.raises(Conflict):
        await store.create("s.i1.7", b"[2]")


async def test_an_empty_value_is_a_value(store: KvStore) -> None:
    revision = await store.put("d.60", b"")
    assert await store.get("d.60") == (b"", revision)


async def test_a_removed_keys_marker_expires(nats_bus: Bus, store: KvStore) -> None:
    """A settled record's marker carries a TTL: the server drops it after a minute instead
    of keeping it (and its index entry) as long as the bucket keeps keys (7 days)."""
    revision = await store.put("m.60.a", b'{"x":1}')
    await store.delete("m.60.a", revision)
    marker = await nats_bus.js.get_last_msg(
        f"KV_{subjects.REPORTS_BUCKET}", "$KV.sms_reports.m.60.a"
    )
    assert marker.headers is not None
    assert marker.headers.get("KV-Operation") == "DEL"
    assert marker.headers.get("Nats-TTL") == f"{bus.REMOVED_KEY_TTL:g}s"


async def test_listing_keys_leaves_no_watcher_behind(store: KvStore) -> None:
    """The sweep lists keys every few seconds for as long as the agent runs: each listing's
    nats-py watcher (a reference cycle) must be gone when it returns, not left for the
    collector's rare full pass (gc_tuning.settle), or the agent's memory grows with time."""

    def watchers() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, KeyValue.KeyWatcher))

    await store.put("d.60", b"")
    gc.collect()
    before = watchers()
    gc.disable()  # as good as rare full passes, and the same every run
    try:
        for _ in range(20):
            assert await store.keys("d.*") == ["d.60"]
            assert await store.keys("w.*.*") == []
        # The last one's subscription task ends on the loop's next turn; the next listing
        # collects it. None piles up.
        assert watchers() <= before + 1
    finally:
        gc.enable()


async def test_a_settled_entry_leaves_its_slot_with_the_next_filing(
    nats_bus: Bus, store: KvStore
) -> None:
    """On a real bucket: a report settles its message without writing the slot, and the
    next filing into the slot (from the hint its read left) takes the entry out, in the
    one write that files the new part."""
    clock = Clock()
    ledger = Ledger(store, ReportBus(), SETTINGS, clock=clock)
    await send(ledger, "m1", 4)
    slot_key = f"s.{SIM.key}.4"
    written: list[bytes] = []

    async def seen(msg: Msg) -> None:
        written.append(msg.data)

    watch = await nats_bus.nc.subscribe(subjects.REPORTS_KV_PREFIX + slot_key, cb=seen)
    await ledger.take(report(4), SIM)
    settled = await nats_bus.buckets.reports.get(slot_key)
    assert _named(settled.value) == ["m1"]
    assert await store.keys("m.>") == []
    await send(ledger, "m2", 4)
    await nats_bus.nc.flush()
    await watch.unsubscribe()
    assert [_named(value) for value in written] == [["m2"]]  # the filing, nothing before
    filed = await nats_bus.buckets.reports.get(slot_key)
    assert _named(filed.value) == ["m2"]
    assert ledger._owed == {}


def _named(value: bytes | None) -> list[str]:
    entries = msgspec.json.decode(value or b"[]", type=list[reports.SlotEntry])
    return [entry.record.rsplit(".", 1)[1] for entry in entries]
