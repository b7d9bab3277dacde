"""Load through the real API, and the books kept on it.

The client sends each message with its own `id` and that id as the text, so the three
records meet: what the API accepted, what the SMS_EVENTS stream holds (what every
consumer will see, after JetStream's de-duplication) and what the simulated network
accepted (its sent log). A message the client could not get accepted (503, no answer)
is sent again with the same id, as a careful integration would.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpx
import msgspec
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, KeyDeletedError, KeyNotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate_sim.stats import SentPart

OUTSIDE = "+4915112345678"
RETRY_PAUSE = 0.2


@dataclass
class Message:
    """One message as the client saw it."""

    id: str
    port: str | None = None  # sent with `port=`, pinned to that port
    accepted: bool = False
    answers: list[int] = field(default_factory=list)  # HTTP status per try; 0: no answer

    @property
    def text(self) -> str:
        return self.id


@dataclass
class Load:
    """Messages sent through `/sendsms` by `concurrency` clients, retried until accepted."""

    url: str
    username: str
    password: str
    messages: list[Message]
    concurrency: int = 32
    retry_for: float = 90.0  # seconds a message is retried before the client gives up
    pause: float = 0.0  # seconds each client waits after a message: a steady pace
    delivery_report: bool = False
    accepted: int = 0
    unavailable_without_retry_after: int = 0  # 503 answers that did not say when to retry

    @classmethod
    def of(cls, url: str, username: str, password: str, tag: str, count: int) -> Load:
        return cls(url, username, password, [Message(f"{tag}{i:05d}") for i in range(count)])

    async def run(self) -> None:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        for message in self.messages:
            queue.put_nowait(message)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:

            async def worker() -> None:
                while not queue.empty():
                    await self._send(client, queue.get_nowait())
                    if self.pause:
                        await asyncio.sleep(self.pause)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _send(self, client: httpx.AsyncClient, message: Message) -> None:
        query = urllib.parse.urlencode(
            {
                "username": self.username,
                "password": self.password,
                "phonenumber": OUTSIDE,
                "message": message.text,
                "id": message.id,
                "timeout": "0",
                "dr": "1" if self.delivery_report else "0",
                **({"port": message.port} if message.port else {}),
            }
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_for
        while True:
            try:
                response = await client.get(f"{self.url}/sendsms?{query}")
            except httpx.HTTPError:
                message.answers.append(0)
            else:
                message.answers.append(response.status_code)
                if response.status_code == 503 and "retry-after" not in response.headers:
                    self.unavailable_without_retry_after += 1
                if response.status_code == 200:
                    result = response.json()["report"]["0"]["result"]
                    message.accepted = result in ("sending", "sent")
                    self.accepted += message.accepted
                    return
                if response.status_code < 500:
                    return  # refused for good (4xx): not accepted
            if loop.time() >= give_up:
                return
            await asyncio.sleep(RETRY_PAUSE)

    @property
    def server_errors(self) -> Counter[int]:
        """Answers that were neither success nor a refusal the client can act on."""
        return Counter(a for m in self.messages for a in m.answers if a >= 500 and a != 503)


# What NATS raises while a server restarts or a cluster elects new leaders: ask again.
NOT_YET = (NatsError, TimeoutError)


async def stream_events(
    js: JetStreamContext, kind: str, limit: float = 30.0
) -> list[tuple[int, contracts.Event]]:
    """Every event of `kind` the SMS_EVENTS stream holds, with its stream sequence.

    Asked again while NATS cannot answer (a cluster electing leaders), up to `limit` s.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                return await _read_events(js, kind)
        except NOT_YET as exc:
            if loop.time() >= deadline:
                raise AssertionError(f"could not read the {kind} events: {exc!r}") from None
            await asyncio.sleep(0.5)


async def _read_events(js: JetStreamContext, kind: str) -> list[tuple[int, contracts.Event]]:
    info = await js.stream_info(subjects.EVENTS_STREAM)
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe(
        subjects.event_filter(kind),
        stream=subjects.EVENTS_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=30.0,
        ),
    )
    events: list[tuple[int, contracts.Event]] = []
    try:
        while True:
            pending = (await sub.consumer_info()).num_pending or 0
            if pending == 0:
                return events
            with contextlib.suppress(NatsTimeoutError, TimeoutError):
                for msg in await sub.fetch(min(pending, 1000), timeout=1.0):
                    event = contracts.decode_event(msg.data)
                    events.append((msg.metadata.sequence.stream, event))
    finally:
        with contextlib.suppress(*NOT_YET):
            await sub.unsubscribe()


async def stream_results(js: JetStreamContext) -> dict[str, list[contracts.SendResult]]:
    """Send results in the stream, by message id."""
    results: dict[str, list[contracts.SendResult]] = {}
    for _, event in await stream_events(js, "result"):
        assert isinstance(event, contracts.SendResult)
        results.setdefault(event.id, []).append(event)
    return results


async def until_results(
    js: JetStreamContext, ids: Iterable[str], limit: float
) -> dict[str, list[contracts.SendResult]]:
    """Wait (bounded) until the stream holds a result for every id; return all results."""
    wanted = set(ids)
    results: dict[str, list[contracts.SendResult]] = {}

    async def complete() -> bool:
        nonlocal results
        results = await stream_results(js)
        return wanted <= results.keys()

    try:
        await until_async(complete, "results", limit)
    except AssertionError:
        missing = sorted(wanted - results.keys())
        raise AssertionError(f"{len(missing)} messages without a result: {missing[:20]}") from None
    return results


def _reason(result: contracts.SendResult) -> str:
    reason = result.reason or "?"
    return reason.split(":")[0] if reason.startswith(contracts.OUTCOME_UNKNOWN) else reason


@dataclass
class Tally:
    """What happened to a load: the numbers RELIABILITY.md reports."""

    accepted: int
    sent: int
    failed: Counter[str]  # by reason
    # id -> reason of each result `unknown`: it may have reached the network and nobody
    # could tell (`interrupted`: its holder was lost; `outcome unknown`: the modem hung)
    unknown: dict[str, str]
    lost: list[str]  # accepted, but no result
    duplicated: list[str]  # more than one result
    resent: list[str]  # a part the network got more than once
    phantom: list[str]  # reported sent, but the network never got it
    unaccepted_results: int  # results for messages the client was refused (sent anyway)
    retried: Counter[int]  # answers before the last try (503; 0 = no answer at all)
    unknown_on_network: int  # results `unknown` whose message the network had taken
    # failed, although the network took its parts (a holder that knew better, a report
    # that says otherwise); phantom is the other kind of wrong result. `unknown` is never
    # wrong: it says that nobody could tell.
    wrong: list[str] = field(default_factory=list)
    # the stream, the stored status or the callbacks disagree about the outcome
    contradictory: list[str] = field(default_factory=list)

    def summary(self, scenario: str) -> str:
        failed = ", ".join(f"{n} {r!r}" for r, n in self.failed.most_common()) or "0"
        unknown = Counter(self.unknown.values())
        said = ", ".join(f"{n} {r!r}" for r, n in unknown.most_common()) or "0"
        return (
            f"[{scenario}] accepted={self.accepted} sent={self.sent} failed: {failed}; "
            f"unknown: {said}; "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"resent={len(self.resent)} phantom={len(self.phantom)} "
            f"wrong={len(self.wrong)} contradictory={len(self.contradictory)} "
            f"unaccepted_results={self.unaccepted_results}; client retries after "
            f"{dict(self.retried) or 'none'}; unknown but on the network: "
            f"{self.unknown_on_network}"
        )

    def check(self, scenario: str) -> None:
        """Nothing lost, nothing twice, nothing claimed that did not happen, and every
        record of an outcome telling the same story."""
        print(self.summary(scenario))
        assert not self.lost, f"lost: {self.lost[:20]}"
        assert not self.duplicated, f"more than one result: {self.duplicated[:20]}"
        assert not self.resent, f"sent twice: {self.resent[:20]}"
        assert not self.phantom, f"reported sent, never sent: {self.phantom[:20]}"
        assert not self.contradictory, f"contradictory results: {self.contradictory[:20]}"


def tally(
    messages: Iterable[Message],
    results: dict[str, list[contracts.SendResult]],
    network: Iterable[SentPart],
    *,
    stored: dict[str, contracts.MessageStatus] | None = None,
    called_back: dict[str, set[str]] | None = None,
) -> Tally:
    """The books. `stored`: the `sms_messages` status by id; `called_back`: the statuses
    each id's result callbacks carried (`Sent`, `Failed`, `Unknown`); either is compared
    when given."""
    messages = list(messages)
    network = list(network)
    accepted = [m for m in messages if m.accepted]
    on_network = Counter(part.text for part in network)
    mine = {m.id for m in messages}
    sent = unknown_on_network = 0
    reasons: Counter[str] = Counter()
    unknown: dict[str, str] = {}
    phantom: list[str] = []
    for message in accepted:
        for result in results.get(message.id, [])[:1]:
            if result.status is contracts.SendStatus.SENT:
                sent += 1
                if on_network[message.text] == 0:
                    phantom.append(message.id)
            elif result.status is contracts.SendStatus.UNKNOWN:
                unknown[message.id] = _reason(result)
                unknown_on_network += on_network[message.text] > 0
            else:
                reasons[_reason(result)] += 1
    return Tally(
        accepted=len(accepted),
        sent=sent,
        failed=reasons,
        unknown=unknown,
        lost=[m.id for m in accepted if m.id not in results],
        duplicated=[i for i, r in results.items() if len(r) > 1],
        resent=[text for text, n in on_network.items() if n > 1],
        phantom=phantom,
        unaccepted_results=sum(1 for m in messages if not m.accepted and m.id in results)
        + sum(1 for i in results if i not in mine),
        retried=Counter(a for m in messages for a in m.answers if a != 200),
        unknown_on_network=unknown_on_network,
        wrong=[
            m.id
            for m in accepted
            if any(r.status is contracts.SendStatus.FAILED for r in results.get(m.id, []))
            and on_network[m.text]
        ],
        contradictory=_contradictory(results, stored or {}, called_back or {}),
    )


_OUTCOME = {
    contracts.MessageState.SENT: "sent",
    contracts.MessageState.DELIVERED: "sent",
    contracts.MessageState.UNDELIVERED: "sent",
    contracts.MessageState.FAILED: "failed",
    contracts.MessageState.UNKNOWN: "unknown",
}
# A delivery report that came for a message whose result is `unknown` tells what became
# of it: that status agrees with the result, it does not contradict it.
_REPORTED = (contracts.MessageState.DELIVERED, contracts.MessageState.UNDELIVERED)


def _contradictory(
    results: dict[str, list[contracts.SendResult]],
    stored: dict[str, contracts.MessageStatus],
    called_back: dict[str, set[str]],
) -> list[str]:
    """Ids whose outcome is told differently by the stream, the KV or the callbacks."""
    found: list[str] = []
    for message_id, said in results.items():
        outcomes = {r.status.value for r in said}
        status = stored.get(message_id)
        if status is not None:
            told = _OUTCOME.get(status.state, status.state.value)
            if outcomes == {"unknown"} and status.state in _REPORTED:
                told = "unknown"  # the report came after: it settles, not contradicts
            outcomes.add(told)
        outcomes |= {s.lower() for s in called_back.get(message_id, set())}
        if len(outcomes) > 1:
            found.append(message_id)
    return found


async def stored_statuses(
    kv: KeyValue, ids: Iterable[str], limit: float = 30.0
) -> dict[str, contracts.MessageStatus]:
    """The `sms_messages` status of each id that has one, once each shows an outcome (or
    at `limit`). A status write that failed waits in the agent's spool for its next
    heartbeat, so right after the results are in the stream a status may still say
    `sending`; one that stays so is a contradiction the tally reports."""
    wanted = list(ids)
    statuses: dict[str, contracts.MessageStatus] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        for message_id in wanted:
            known = statuses.get(message_id)
            if known is not None and known.state in _OUTCOME:
                continue
            with contextlib.suppress(KeyNotFoundError, KeyDeletedError):
                entry = await kv.get(subjects.message_key(message_id))
                if entry.value:
                    statuses[message_id] = contracts.decode(entry.value, contracts.MessageStatus)
        settled = all(m in statuses and statuses[m].state in _OUTCOME for m in wanted)
        if settled or loop.time() >= deadline:
            return statuses
        await asyncio.sleep(0.25)


def port_state(value: bytes | None) -> contracts.PortState:
    return msgspec.json.decode(value or b"", type=contracts.PortState)


async def provisioned(config: NatsConfig, name: str, limit: float = 30.0) -> Client:
    """A connection once the servers have elected their JetStream leaders and the streams
    and buckets exist (a cluster takes a moment to)."""
    nc = await bus.connect(config, name=name)
    async with asyncio.timeout(limit):
        while True:
            try:
                await bus.provision(nc.jetstream(), config)
                return nc
            except (NatsError, APIError, ServiceUnavailableError, TimeoutError):
                await asyncio.sleep(0.5)


async def until_async(check: Callable[[], Awaitable[bool]], what: str, limit: float) -> None:
    """Wait until `await check()` holds (it asks NATS, say); fail naming `what` at the bound.

    A check that NATS cannot answer yet counts as not holding yet.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                if await check():
                    return
        except NOT_YET:
            pass
        if loop.time() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@dataclass
class Deliveries:
    """Inbound SMS or delivery reports: each one expected exactly once in the stream."""

    kind: str
    expected: int
    lost: list[str]
    duplicated: list[str]

    def summary(self, scenario: str) -> str:
        return (
            f"[{scenario}] {self.kind}: expected={self.expected} lost={len(self.lost)} "
            f"duplicated={len(self.duplicated)}"
        )

    def check(self, scenario: str) -> None:
        print(self.summary(scenario))
        assert not self.lost, f"{self.kind} lost: {self.lost[:20]}"
        assert not self.duplicated, f"{self.kind} more than once: {self.duplicated[:20]}"


def deliveries(kind: str, expected: Iterable[str], delivered: Iterable[str]) -> Deliveries:
    """`expected`: what should arrive once each (texts, message ids); `delivered`: what did."""
    wanted = set(expected)
    seen = Counter(delivered)
    return Deliveries(
        kind=kind,
        expected=len(wanted),
        lost=sorted(wanted - seen.keys()),
        duplicated=sorted(k for k, n in seen.items() if n > 1),
    )
