"""The report ledger on the bus: what every sent part awaits, shared by all agents.

Keys of the `sms_reports` bucket (replicated like every bucket):

    m.<due>.<message>   a message awaiting its report (ReportRecord); `<due>` is its
                        sweep bucket (reports.due_label), so expiry lists only due ones
    d.<due>             the index of sweep buckets that hold records
    s.<sim>.<mr>        the parts of a SIM awaiting a report with TP-MR `<mr>` (a list:
                        the MR wraps every 256 parts)
    w.<sim>.<digest>    a report read before its record was there (WaitingReport)

Any agent reading a report looks up `s.<sim>.<mr>`, so a restarted agent, or another
port or host the SIM moved to, matches it like the sender would. Every change to a
record is a compare-and-set on its revision: of two agents deciding one message (its
last report and the expiry sweep), one wins and publishes, with the stable event id
`<message>:report` besides.

The agent keeps no record in memory, only hints (`Hints`): the value and revision of the
keys it wrote or read last, a bounded number of them. A hint is where a compare-and-set
starts instead of a read: the record a report is for (written when its message was sent)
and a slot being filed into. A stale hint fails its compare-and-set and is read afresh;
nothing is decided from a hint that a write does not confirm. Which part a report is for
is always chosen from a slot read just then.

Writes that decide nothing between them go out together and are awaited once (one wake-up
of the port instead of two): a sent message's record with its slots (the record first).
Every decision (a record's compare-and-set) is still awaited before what follows from it
is sent.

A settled record's slot entries are not taken out by a write of their own: the removal is
owed (`_owed`, bounded) and rides on the next write of that slot, the filing of the part
that next gets its TP-MR, so a slot costs one write per part instead of two. A slot that
held nothing but owed entries when its report read it is filed from that revision,
unread, even once its hint is gone (`_owed_only`: an agent with more SIMs than slot
hints); the compare-and-set confirms that nobody wrote it since. Until then
the entry points at a record that is gone, which every reader handles as it always did
(an entry left behind by a crash between the steps): a record that is gone is no
candidate, and this agent leaves its own owed entries out before choosing. Owed removals
past the bound, and all of them when the agent stops, are written then; a crash loses
them, and those entries stay until a report chooses one or a filing finds it past
`report_timeout`. Nothing is decided from them.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import gc
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue
from smsgate import contracts, subjects
from smsgate.acks import AckPublisher
from smsgate.bus import CREATE_ONLY, WRONG_LAST_SEQUENCE, removal
from smsgate.pdu import ReportState, StatusReport

from smsgate_agent import reports
from smsgate_agent.reports import ReportRecord, Sim, SlotEntry, WaitingReport
from smsgate_agent.send_path import until_done

log = logging.getLogger("smsgate.agent")

# A sweep bucket's index key is dropped only this long after it came due: an agent whose
# clock is behind may still file a record under it until then.
INDEX_GRACE = dt.timedelta(minutes=2)
# A claim or a decision left unpublished this long is taken over: its agent died or was cut
# off. A live agent publishes in milliseconds; acting sooner would publish it twice.
TAKEOVER_AFTER = dt.timedelta(seconds=5)
REMEMBERED_WAITING = 1024  # reports this agent parked, retried as soon as it records more
# Hints kept (see the module's docstring): records awaiting reports, and slots (256 per SIM).
RECORD_HINTS = 8192
SLOT_HINTS = 32768
# Slots whose settled entries this agent owes a removal, merged into their next filing: a
# SIM files into each of its 256 slots once per 256 parts, so this covers 256 SIMs sending
# all the time (about 200 B each); past it the oldest are written at once.
OWED_SLOTS = 65536
FLUSH_AT_ONCE = 256  # owed removals written together when the agent stops

_slots = msgspec.json.Decoder(list[SlotEntry])
_record = msgspec.json.Decoder(ReportRecord)
_waiting = msgspec.json.Decoder(WaitingReport)
_encode = msgspec.json.Encoder().encode
_EXPECTED = Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value


class Conflict(Exception):
    """Someone else changed the key since it was read: read again."""


T = TypeVar("T")


class Hints(Generic[T]):
    """The last known value and revision of up to `size` keys, least recently used out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: dict[str, tuple[T, int]] = {}

    def get(self, key: str) -> tuple[T, int] | None:
        return self._known.get(key)

    def remember(self, key: str, value: T, revision: int) -> None:
        self._known.pop(key, None)
        self._known[key] = (value, revision)
        if len(self._known) > self.size:
            del self._known[next(iter(self._known))]

    def forget(self, key: str) -> None:
        self._known.pop(key, None)

    def __len__(self) -> int:
        return len(self._known)


class Store(Protocol):
    """The bucket as the ledger uses it: values with revisions, changed by compare-and-set."""

    async def get(self, key: str) -> tuple[bytes, int] | None: ...
    async def put(self, key: str, value: bytes) -> int: ...
    async def put_soon(self, key: str, value: bytes) -> Awaitable[int]:
        """`put`, sent now; the awaitable is its revision (writes are applied in the order
        they are sent)."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Raises Conflict when the key exists."""
        ...

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Raises Conflict unless the key is still at `revision`."""
        ...

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Raises Conflict unless the key is still at `revision` (if given)."""
        ...

    async def keys(self, pattern: str) -> list[str]:
        """Keys matching a NATS subject pattern (`*` one token, `>` the rest)."""
        ...


class Reporter(Protocol):
    """Where decided reports go (smsgate_agent.publisher.Publisher)."""

    agent: str

    async def event(self, event: contracts.Event) -> None: ...
    async def event_and_status(
        self, event: contracts.Event, status: contracts.MessageStatus
    ) -> tuple[Exception | None, Exception | None]: ...
    async def status(self, message_id: str) -> contracts.MessageStatus | None: ...


@dataclass(frozen=True)
class LedgerSettings:
    timeout: dt.timedelta  # no report by then: `expired`
    unmatched_after: dt.timedelta  # a report without a record waits this long
    sweep: float  # seconds between sweeps (and the width of a sweep bucket)


class Ledger:
    """Records sent parts, matches reports, and sweeps what is due; one per agent."""

    def __init__(
        self,
        store: Store,
        publisher: Reporter,
        settings: LedgerSettings,
        *,
        clock: Callable[[], dt.datetime] = contracts.utcnow,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.clock = clock
        # a takeover must also wait out a couple of sweeps' worth of clock skew and delay
        self._takeover = max(TAKEOVER_AFTER, dt.timedelta(seconds=2 * settings.sweep))
        self._indexed = 0  # the sweep bucket this agent filed its last record under
        self._parked: dict[str, None] = {}  # keys of reports this agent parked, oldest first
        # reports this agent published, by the port that sent the message and by state
        self._reported: dict[str, collections.Counter[str]] = {}
        self._records: Hints[ReportRecord] = Hints(RECORD_HINTS)
        self._slots: Hints[list[SlotEntry]] = Hints(SLOT_HINTS)
        # slot key -> the keys of settled records whose entries are still in it (oldest first)
        self._owed: dict[str, frozenset[str]] = {}
        # slot key -> a revision at which it held only entries owed a removal: a filing
        # then writes from it unread, though the slot's hint is gone (few bytes a slot)
        self._owed_only: dict[str, int] = {}

    # --- sending --------------------------------------------------------------------------

    async def record(self, record: ReportRecord) -> None:
        """Make a sent message's parts matchable by any agent (safe to repeat)."""
        label = reports.due_label(record.due, self.settings.sweep)
        key = _record_key(label, record.id)
        # The record and its slots go out together, the record first, and are awaited
        # once: a report that finds a slot entry before its record is stored (or whose
        # record's write failed: this is done again) is parked, as one that came before
        # both, and matched by retry_parked.
        written = await self.store.put_soon(key, _encode(record))
        try:
            if label != self._indexed:  # due times grow with the clock: one at a time
                await self._create(f"d.{label}", b"")
                self._indexed = label
            for part in record.parts:
                entry = SlotEntry(key, part.sequence, record.to, record.sent)
                slot = _slot_key(record.sim.key, part.reference)
                owed = self._owed.get(slot, frozenset())
                known = self._slots.get(slot)
                if known is None and slot in self._owed_only:
                    # What it held then is all dropped by the filing: its revision will do.
                    known = ([], self._owed_only[slot])
                await self._edit_slot(slot, self._filing(entry, owed), known, hint=True)
                self._paid(slot, owed)
        finally:
            self._records.remember(key, record, await written)

    async def retry_parked(self, sim: Sim) -> None:
        """Match the reports of `sim` this agent parked (the sweep has them otherwise)."""
        prefix = f"w.{sim.key}."
        for waiting in [k for k in self._parked if k.startswith(prefix)]:
            try:
                await self._retry_waiting(waiting)
            except Exception as exc:
                log.warning("%s: waiting report %s not retried yet: %s", sim.port, waiting, exc)

    # --- reports --------------------------------------------------------------------------

    async def take(self, report: StatusReport, reader: Sim) -> None:
        """A report read off a SIM: matched through the ledger, or kept until its record
        shows up (then published `unmatched` if none does). Durable when this returns."""
        now = self.clock()
        if await self._match(report, reader, now):
            return
        waiting = WaitingReport.of(report, reader, now)
        key = f"w.{reader.key}.{waiting.digest}"
        await self.store.put(key, _encode(waiting))
        self._parked[key] = None
        while len(self._parked) > REMEMBERED_WAITING:
            del self._parked[next(iter(self._parked))]  # the sweep still has it
        log.info(
            "%s: report TP-MR %d for %s matches no sent part yet; waiting",
            reader.port,
            report.message_reference,
            report.recipient,
        )

    async def _match(self, report: StatusReport, reader: Sim, now: dt.datetime) -> bool:
        """Apply a report to the part it is for; False when no part is waiting for it."""
        while True:
            try:
                return await self._match_once(report, reader, now)
            except Conflict:
                continue  # the record or slot moved on meanwhile: look again

    async def _match_once(self, report: StatusReport, reader: Sim, now: dt.datetime) -> bool:
        slot_key = _slot_key(reader.key, report.message_reference)
        entries, slot_revision = await self._read_slot(slot_key)
        entries = self._live(slot_key, entries)
        while True:
            chosen = reports.choose(entries, report, now, self.settings.timeout)
            if chosen is None:
                return False
            record, record_revision = await self._read_record(chosen.record, chosen.sequence)
            part = record.part(chosen.sequence) if record is not None else None
            if record is None or part is None or part.state is not ReportState.PENDING:
                # Left behind by a settled message (a crash between its steps).
                await self._edit_slot(slot_key, _without(chosen))
                entries = _without(chosen)(entries)
                if record is None or part is None:
                    continue
                # The same part's report again: read again after a crash, which may have
                # come between the decision and its publishing.
                if record.report is not None and not await self._published(record):
                    await self._publish(record, record.report)
                if record.settled:
                    await self._forget(chosen.record, record, record_revision)
                return True
            updated, event = reports.apply(record, chosen.sequence, report, reader, now)
            if updated is record:
                return True  # a temporary status: the final report follows
            revision = await self._update_record(chosen.record, updated, record_revision)
            if event is not None:
                await self._publish(updated, event)
            if updated.settled:
                # Nothing else awaiting a report in the slot as read: it holds only
                # entries owed a removal at that revision.
                alone = all(e == chosen for e in entries)
                await self._forget(
                    chosen.record,
                    updated,
                    revision,
                    only=(slot_key, slot_revision) if alone and slot_revision else None,
                )
            else:
                await self._edit_slot(slot_key, _without(chosen), (entries, slot_revision))
            log.info(
                "%s: report for %s part %d/%d: %s",
                reader.port,
                record.id,
                chosen.sequence,
                len(record.parts),
                report.state.value,
                extra={"message_id": record.id, "port": reader.port, "event": "report"},
            )
            return True

    # --- the sweep ------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire what is due and retry (or give up on) waiting reports. Every agent sweeps;
        compare-and-set makes one of them act on each record."""
        now = self.clock()
        for label in sorted(int(k[2:]) for k in await self.store.keys("d.*") if k[2:].isdigit()):
            if label > now.timestamp():
                break
            keys = await self.store.keys(f"m.{label}.*")
            for key in keys:
                await _unless_unreadable(key, self._settle_due(key, now))
            if not keys and label <= (now - INDEX_GRACE).timestamp():
                await self._delete(f"d.{label}")
        for key in await self.store.keys("w.*.*"):
            await _unless_unreadable(key, self._retry_waiting(key))

    async def _settle_due(self, key: str, now: dt.datetime) -> None:
        got = await self._get(key)
        if got is None:
            return
        record = _record.decode(got[0])
        if record.report is None:
            record, event = reports.expire(record, now)
            try:
                revision = await self._update_record(key, record, got[1])
            except Conflict:
                return  # a report decided it meanwhile; the next sweep looks again
            await self._publish(record, event)
            log.info("report for %s: expired", record.id, extra={"message_id": record.id})
        else:
            revision = got[1]
            # Decided, but a part never reported; or the decider died before publishing.
            if not await self._published(record):
                if now - record.report.time < self._takeover:
                    return  # its decider is publishing it
                await self._publish(record, record.report)
        await self._forget(key, record, revision, owe=False)

    async def _published(self, record: ReportRecord) -> bool:
        stored = await self.publisher.status(record.id)
        return stored is not None and stored.delivery is not None

    async def _retry_waiting(self, key: str) -> None:
        """Match a parked report now, or publish it `unmatched` once it waited its time."""
        got = await self._get(key)
        if got is None:
            self._parked.pop(key, None)
            return
        waiting, revision = _waiting.decode(got[0]), got[1]
        now = self.clock()
        try:
            if waiting.claim == "":
                if await self._candidate(waiting):
                    claim = "match"
                elif now - waiting.seen >= self.settings.unmatched_after:
                    claim = "unmatched"
                else:
                    return
                waiting = msgspec.structs.replace(waiting, claim=claim, claimed=now)
                revision = await self._update(key, waiting, revision)
            elif now - (waiting.claimed or waiting.seen) < self._takeover:
                return  # its claimer is acting on it
            if waiting.claim == "match":
                if not await self._match(waiting.report(), waiting.reader, waiting.seen):
                    # Taken by another claim since: wait on for a record.
                    unclaimed = msgspec.structs.replace(waiting, claim="", claimed=None)
                    await self._update(key, unclaimed, revision)
                    return
            else:
                event = reports.unmatched(waiting, self.clock())
                await self._publish(None, event)
                log.warning(
                    "%s: report TP-MR %d for %s matched no sent message: published unmatched",
                    waiting.reader.port,
                    waiting.reference,
                    waiting.recipient,
                )
            await self._delete(key, revision)
        except Conflict:
            return  # another agent acts on it
        self._parked.pop(key, None)

    async def _candidate(self, waiting: WaitingReport) -> bool:
        slot = _slot_key(waiting.reader.key, waiting.reference)
        entries, _ = await self._read_slot(slot)
        entries = self._live(slot, entries)
        chosen = reports.choose(entries, waiting.report(), waiting.seen, self.settings.timeout)
        return chosen is not None

    # --- steps ----------------------------------------------------------------------------

    async def _publish(self, record: ReportRecord | None, event: contracts.DeliveryReport) -> None:
        """The report event (and the message's status), however long NATS is away."""
        status = reports.status(record, event, self.publisher.agent) if record else None

        async def step() -> None:
            if status is None:
                await self.publisher.event(event)
                return
            failed, status_failed = await self.publisher.event_and_status(event, status)
            if failed is not None:
                raise failed
            if status_failed is not None:
                log.warning("status of %s not updated: %s", event.id, status_failed)

        await until_done(step, f"report of {event.id}")
        counts = self._reported.get(event.port)
        if counts is None:  # (setdefault would make a Counter per report)
            counts = self._reported[event.port] = collections.Counter()
        counts[event.state.value] += 1

    def published_for(self, port: str) -> Mapping[str, int]:
        """How many reports of `port`'s messages this agent published, by state."""
        return self._reported.get(port, {})

    async def _forget(
        self,
        key: str,
        record: ReportRecord,
        revision: int,
        *,
        owe: bool = True,
        only: tuple[str, int] | None = None,
    ) -> None:
        """Drop a settled record, and its slot entries: owed (see the module), or now
        (`owe` False: the sweep, which seldom files into the slots of what it expires).
        `only`: a slot and a revision at which it held nothing but owed entries, this
        record's included."""
        self._records.forget(key)
        try:
            await self._delete(key, revision)
        except Conflict:
            if len(record.parts) > 1:
                return  # a late part's report came meanwhile: the next sweep of it settles it
            # A settled one-part record changes only this way (the sweep, the same report
            # read again): whoever came first deleted it.
        await self._owe(key, record, only)
        if not owe:
            for slot in _slots_of(record):
                await self._unfile(slot)

    async def _owe(
        self, key: str, record: ReportRecord, only: tuple[str, int] | None = None
    ) -> None:
        """Owe the removal of a settled record's entries from its slots; write the oldest
        owed removals now when more slots than OWED_SLOTS owe one."""
        for slot in _slots_of(record):
            self._owed[slot] = self._owed.pop(slot, frozenset()) | {key}
        if only is not None:
            self._owed_only[only[0]] = only[1]
        while len(self._owed) > OWED_SLOTS:
            await self._unfile(next(iter(self._owed)))

    async def flush(self) -> None:
        """Write every owed removal (the agent stops: what it owes would be lost), many
        slots at once: an agent may owe tens of thousands."""
        while self._owed:
            slots = list(itertools.islice(self._owed, FLUSH_AT_ONCE))
            await asyncio.gather(*(self._unfile(slot) for slot in slots))

    async def _unfile(self, slot: str) -> None:
        """Take the records owed a removal out of `slot` by a write of its own."""
        owed = self._owed.get(slot, frozenset())
        await self._edit_slot(
            slot,
            lambda es: [e for e in es if e.record not in owed],
            self._slots.get(slot),
            hint=True,
        )
        self._paid(slot, owed)

    def _paid(self, slot: str, owed: frozenset[str]) -> None:
        """`owed` is out of `slot` now (what was owed meanwhile stays owed)."""
        if not owed:
            return
        self._owed_only.pop(slot, None)  # written since: that revision is gone
        left = self._owed.pop(slot, frozenset()) - owed
        if left:
            self._owed[slot] = left

    def _live(self, slot: str, entries: list[SlotEntry]) -> list[SlotEntry]:
        """`entries` without those this agent owes a removal: their records are gone."""
        owed = self._owed.get(slot)
        return [e for e in entries if e.record not in owed] if owed else entries

    def _filing(
        self, entry: SlotEntry, owed: frozenset[str] = frozenset()
    ) -> Callable[[list[SlotEntry]], list[SlotEntry]]:
        """Add `entry` to a slot, dropping the parts there whose records are due anyway
        and those of the settled records in `owed`."""

        def change(entries: list[SlotEntry]) -> list[SlotEntry]:
            now = self.clock()
            kept = [
                e
                for e in entries
                if now - e.sent <= self.settings.timeout and e != entry and e.record not in owed
            ]
            return [*kept, entry]

        return change

    async def _read_record(self, key: str, sequence: int) -> tuple[ReportRecord | None, int]:
        """The record at `key` and its revision (0: none). A hint serves when it shows the
        part still awaiting its report: deciding from it takes a compare-and-set, which
        fails if the record moved on since."""
        hinted = self._records.get(key)
        if hinted is not None:
            part = hinted[0].part(sequence)
            if part is not None and part.state is ReportState.PENDING:
                return hinted
        got = await self._get(key)
        if got is None:
            self._records.forget(key)
            return None, 0
        record = _record.decode(got[0])
        self._records.remember(key, record, got[1])
        return record, got[1]

    async def _update_record(self, key: str, record: ReportRecord, revision: int) -> int:
        try:
            revision = await self._update(key, record, revision)
        except Conflict:
            self._records.forget(key)
            raise
        self._records.remember(key, record, revision)
        return revision

    async def _read_slot(self, key: str) -> tuple[list[SlotEntry], int | None]:
        got = await self._get(key)
        if got is None:
            self._slots.forget(key)
            return [], None
        entries = _slots.decode(got[0]) if got[0] else []
        self._slots.remember(key, entries, got[1])
        return entries, got[1]

    async def _edit_slot(
        self,
        key: str,
        change: Callable[[list[SlotEntry]], list[SlotEntry]],
        known: tuple[list[SlotEntry], int | None] | None = None,
        *,
        hint: bool = False,
    ) -> None:
        """Change a slot's list by compare-and-set (the sweep and a port may meet there),
        from `known` (a read of it, or a hint if `hint`) if given. A hint that the change
        leaves as it is is read again: only a read says there is nothing to change. An
        emptied slot keeps its key: the SIM's MR comes round to it again."""
        while True:
            entries, revision = known if known is not None else await self._read_slot(key)
            trusted = known is None or not hint
            known = None
            changed = change(entries)
            if changed == entries:
                if trusted:
                    return
                continue
            try:
                if revision is None:
                    written = await self._create(key, _encode(changed), must=True)
                else:
                    written = await self._update(key, changed, revision)
            except Conflict:
                self._slots.forget(key)
                continue
            if written is not None:
                self._slots.remember(key, changed, written)
            return

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        return await self.store.get(key)

    async def _update(self, key: str, value: object, revision: int) -> int:
        return await self.store.update(key, _encode(value), revision)

    async def _create(self, key: str, value: bytes, *, must: bool = False) -> int | None:
        try:
            return await self.store.create(key, value)
        except Conflict:
            if must:
                raise
            return None

    async def _delete(self, key: str, revision: int | None = None) -> None:
        await self.store.delete(key, revision)


class KvStore:
    """A JetStream KV bucket as the ledger's Store. Writes go through the agent's shared
    ack inbox when it has one: a few times cheaper than nats-py's KV calls, which matters
    at several writes per message."""

    def __init__(
        self, kv: KeyValue, js: JetStreamContext, acks: AckPublisher | None = None
    ) -> None:
        self.kv = kv
        self.js = js
        self.acks = acks
        self._prefix = subjects.REPORTS_KV_PREFIX
        self._stream = f"KV_{subjects.REPORTS_BUCKET}"

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """Read by the stream's leader, like kv.get() (a direct get may answer from a
        replica that is behind)."""
        if self.acks is not None:
            stored = await (await self.acks.last_message(self._stream, self._prefix + key))
            if stored is None or stored.kv_removed:
                return None
            return stored.data, stored.seq
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None or entry.revision is None:
            return None
        return entry.value, entry.revision

    async def put(self, key: str, value: bytes) -> int:
        return await self._write(key, value, {})

    async def put_soon(self, key: str, value: bytes) -> Awaitable[int]:
        return await self._write_soon(key, value, {})

    async def create(self, key: str, value: bytes) -> int:
        try:
            return await self._write(key, value, dict(CREATE_ONLY))
        except Conflict:
            # The key may be a tombstone, which nats-py's create() takes over.
            try:
                return await self.kv.create(key, value)
            except KeyWrongLastSequenceError:
                raise Conflict(key) from None

    async def update(self, key: str, value: bytes, revision: int) -> int:
        return await self._write(key, value, {_EXPECTED: str(revision)})

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Remove `key`; its marker expires after bus.REMOVED_KEY_TTL, not with the bucket."""
        await self._write(key, b"", removal(revision))

    async def _write(self, key: str, value: bytes, headers: dict[str, str]) -> int:
        try:
            if self.acks is None:
                ack = await self.js.publish(self._prefix + key, value, headers=headers)
                return ack.seq
            return (await (await self.acks.publish(self._prefix + key, value, headers))).seq
        except APIError as exc:
            raise _conflict(key, exc) from None

    async def _write_soon(self, key: str, value: bytes, headers: dict[str, str]) -> Awaitable[int]:
        """A write sent now (through the ack inbox; a task of its own without one)."""
        if self.acks is None:
            return asyncio.ensure_future(self._write(key, value, headers))
        ack = await self.acks.publish(self._prefix + key, value, headers)

        async def revision() -> int:
            try:
                return (await ack).seq
            except APIError as exc:
                raise _conflict(key, exc) from None

        return revision()

    async def keys(self, pattern: str) -> list[str]:
        """Filtered by the server (kv.keys() lists the whole bucket, then filters).

        nats-py's watcher is an ordered consumer whose subscription, state and callback
        point at one another: a stopped one is freed only by the collector's full pass,
        which gc_tuning makes rare. The sweep lists keys twice every `agent.report_sweep`
        seconds, so it is collected here; else it piles up (about 10 KiB a listing)."""
        watcher = await self.kv.watch(pattern, ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
            del watcher
            gc.collect()
        return keys


def _conflict(key: str, exc: APIError) -> Exception:
    """A refused compare-and-set as Conflict; any other error as it is."""
    return Conflict(key) if exc.err_code in WRONG_LAST_SEQUENCE else exc


async def _unless_unreadable(key: str, step: Coroutine[Any, Any, None]) -> None:
    """One key that cannot be read (written by a newer version?) must not stop a sweep."""
    try:
        await step
    except msgspec.MsgspecError as exc:
        log.error("report ledger: %s unreadable, left as it is: %s", key, exc)


def _without(entry: SlotEntry) -> Callable[[list[SlotEntry]], list[SlotEntry]]:
    return lambda entries: [e for e in entries if e != entry]


def _record_key(label: int, message_id: str) -> str:
    return f"m.{label}.{subjects.message_key(message_id)}"


def _slot_key(sim: str, reference: int) -> str:
    return f"s.{sim}.{reference & 0xFF}"


def _slots_of(record: ReportRecord) -> list[str]:
    """The slots a record's parts are filed under, each once."""
    return list(dict.fromkeys(_slot_key(record.sim.key, p.reference) for p in record.parts))
