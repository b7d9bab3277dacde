"""Retries and dead letters against a real receiver that fails in every way it can."""

from __future__ import annotations

import re

import pytest
from nats.js.api import ConsumerInfo
from smsgate import contracts, subjects
from smsgate_callback.retry import BackoffPolicy

from tests.conftest import Bus
from tests.integration.callback_fixtures import (
    Hit,
    Receiver,
    answer_ok,
    callback_config,
    inbound,
    publish,
    result,
    running,
    status,
    until,
)

pytestmark = pytest.mark.timeout(60)

POLICY = BackoffPolicy(initial=0.05, maximum=0.4, max_age=120.0)


async def _consumer(nats_bus: Bus, webhook: str = "gateway") -> ConsumerInfo:
    info: ConsumerInfo = await nats_bus.js.consumer_info(
        subjects.EVENTS_STREAM, f"callback-{webhook}"
    )
    return info


async def _dead_letters(nats_bus: Bus, webhook: str = "gateway") -> list[contracts.DeadLetter]:
    """Every dead letter of `webhook` stored so far."""
    stored = (await nats_bus.js.stream_info(subjects.DEAD_STREAM)).state.messages
    sub = await nats_bus.js.subscribe(subjects.DEAD_WILDCARD, ordered_consumer=True)
    letters = []
    for _ in range(stored):
        msg = await sub.next_msg(timeout=5)
        if msg.subject == subjects.dead_callback(webhook):
            letters.append(contracts.decode(msg.data, contracts.DeadLetter))
    await sub.unsubscribe()
    return letters


async def test_refused_then_500_then_timeouts_then_recovery_loses_nothing(nats_bus: Bus) -> None:
    receiver = Receiver()  # not started yet: its port refuses connections
    config = callback_config(
        nats_bus.config,
        url=receiver.url,
        timeout=0.3,
        max_age=POLICY.max_age,
        webhooks=[],
    )
    events = [inbound(f"message {i}", f"lte-{i % 3 + 1}") for i in range(6)]
    labels: dict[str, list[str]] = {}

    def saw_everywhere(label: str) -> bool:
        return all(label in labels.get(e.event_id, []) for e in events)

    async with running(config) as service:
        ids = await publish(nats_bus.js, events)

        def refresh() -> dict[str, list[str]]:
            labels.clear()
            for record in service.records:
                if record.outcome is not None:
                    labels.setdefault(record.event_id, []).append(record.outcome.label)
            return labels

        await until(lambda: bool(refresh()) and saw_everywhere("connect"), "refused")
        receiver.respond = status(500)
        await receiver.start()
        await until(lambda: bool(refresh()) and saw_everywhere("5xx"), "500s")
        receiver.respond = receiver.hang
        await until(lambda: bool(refresh()) and saw_everywhere("timeout"), "timeouts")
        receiver.respond = answer_ok
        receiver.release.set()
        await until(lambda: len(service.acted("delivered")) == len(ids), "all delivered")
    await receiver.stop()
    info = await _consumer(nats_bus)  # the service flushed its acks when it stopped

    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    refresh()
    for event in events:
        records = service.for_event(event.event_id)
        # The attempt sequence follows the failures in order, then one success.
        sequence = " ".join(labels[event.event_id])
        assert re.fullmatch(r"(connect )+(5xx )+(timeout )+2xx", sequence), sequence
        assert [r.attempt for r in records] == list(range(1, len(records) + 1))
        *retries, last = records
        assert last.action == "delivered"
        # Every back-off decision is the policy's: 0.05 doubling, capped at 0.4.
        assert [r.action for r in retries] == ["retry"] * len(retries)
        assert [r.delay for r in retries] == [POLICY.delay(r.attempt) for r in retries]
    assert len(receiver.ok_ids()) == len(events)  # each delivered once after recovery


async def test_retry_after_is_honoured(nats_bus: Bus) -> None:
    answers = [status(429, {"Retry-After": "1"}), answer_ok]

    async def respond(hit: Hit) -> object:
        return await answers.pop(0)(hit) if len(answers) > 1 else await answers[0](hit)

    async with Receiver(respond=respond) as receiver:  # type: ignore[arg-type]
        config = callback_config(nats_bus.config, url=receiver.url)
        async with running(config) as service:
            [event_id] = await publish(nats_bus.js, [result()])
            await until(lambda: receiver.ok_ids() == [event_id], "delivered after 429")
    retry, done = service.for_event(event_id)
    assert retry.outcome is not None
    assert retry.outcome.label == "429"
    assert retry.delay == 1.0  # Retry-After beats the 0.05 s back-off
    assert done.action == "delivered"
    assert done.attempt == 2


async def test_permanent_4xx_goes_to_dead_letter_at_once(nats_bus: Bus) -> None:
    async with Receiver(respond=status(404)) as receiver:
        config = callback_config(nats_bus.config, url=receiver.url)
        event = result()
        async with running(config) as service:
            await publish(nats_bus.js, [event])
            await until(lambda: bool(service.acted("dead")), "dead letter")
    info = await _consumer(nats_bus)
    assert len(receiver.hits) == 1
    [letter] = await _dead_letters(nats_bus)
    assert letter.reason.startswith("HTTP 404 Not Found")
    assert letter.subject == subjects.event("result", "lte-1")
    assert contracts.decode_event(letter.data) == event
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_an_event_that_stays_undelivered_past_max_age_is_dead_lettered(
    nats_bus: Bus,
) -> None:
    async with Receiver(respond=status(503)) as receiver:
        config = callback_config(nats_bus.config, url=receiver.url, max_age=0.5)
        async with running(config) as service:
            [event_id] = await publish(nats_bus.js, [result()])
            await until(lambda: bool(service.acted("dead")), "dead letter")
    records = service.for_event(event_id)
    assert [r.action for r in records[:-1]] == ["retry"] * (len(records) - 1)
    assert len(records) >= 2
    [letter] = await _dead_letters(nats_bus)
    assert re.match(r"gave up after \d+ attempts over \d+s: HTTP 503", letter.reason)
    assert len(receiver.hits) == len(records)


async def test_an_undecodable_event_is_dead_lettered_and_the_rest_flow(nats_bus: Bus) -> None:
    async with Receiver() as receiver:
        config = callback_config(nats_bus.config, url=receiver.url)
        async with running(config) as service:
            await nats_bus.js.publish(subjects.event("result", "lte-1"), b'{"type": "result"}')
            [event_id] = await publish(nats_bus.js, [result()])
            await until(lambda: receiver.ok_ids() == [event_id], "the good event")
            await until(lambda: bool(service.acted("dead")), "dead letter")
    info = await _consumer(nats_bus)
    [letter] = await _dead_letters(nats_bus)
    assert letter.data == '{"type": "result"}'
    assert "missing required field" in letter.reason.lower()
    assert info.num_ack_pending == 0
