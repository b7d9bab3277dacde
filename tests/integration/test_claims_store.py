"""The agent's send claims on a real nats-server: a dropped claim leaves a marker that
expires, and the key behaves as before for the next claim."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import APIError, KeyNotFoundError
from smsgate import bus, contracts, subjects
from smsgate.acks import AckPublisher
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate_agent.liveness import Claim
from smsgate_agent.port import deliveries
from smsgate_agent.publisher import Publisher
from smsgate_agent.send_path import Ending, SendPath
from smsgate_agent.sending import PartHook, SendOutcome

from tests.conftest import Bus
from tests.unit.test_send_path import SENT, FakePort


def claim(token: str) -> Claim:
    return Claim(agent="a", boot="b1", port="lte-1", token=token, time=time.time())


@pytest.fixture
def publisher(nats_bus: Bus) -> Publisher:
    return Publisher(nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="a")


async def test_a_dropped_claims_marker_expires(nats_bus: Bus, publisher: Publisher) -> None:
    await (await publisher.claim("m1", claim("t1")))
    await publisher.unclaim("m1", "t1")

    marker = await nats_bus.js.get_last_msg(
        f"KV_{subjects.SENDING_BUCKET}", subjects.SENDING_KV_PREFIX + "m1"
    )
    assert marker.headers is not None
    assert marker.headers.get("KV-Operation") == "DEL"
    assert marker.headers.get("Nats-TTL") == f"{bus.REMOVED_KEY_TTL:g}s"
    with pytest.raises(KeyNotFoundError):  # gone, as a claim dropped before was
        await publisher.holder("m1")


async def test_a_claim_is_dropped_only_by_its_own_token(publisher: Publisher) -> None:
    await (await publisher.claim("m2", claim("t1")))
    await publisher.unclaim("m2", "other")
    held = await publisher.holder("m2")
    assert held is not None
    assert held.token == "t1"
    await publisher.unclaim("m2", "t1")
    # A dropped claim's key is taken by the next claim, at once (its marker or not).
    with pytest.raises(APIError) as refused:
        await (await publisher.claim("m2", claim("t2")))
    assert publisher.is_taken(refused.value)
    assert await publisher.reclaim("m2", claim("t2"))
    held = await publisher.holder("m2")
    assert held is not None
    assert held.token == "t2"


def sent(message_id: str) -> contracts.SendResult:
    return contracts.SendResult(
        event_id=f"{message_id}:result",
        port="lte-1",
        time=contracts.utcnow(),
        id=message_id,
        to="+4917612345678",
        status=contracts.SendStatus.SENT,
    )


async def test_a_settled_messages_claim_and_result_leave_with_the_settled_window(
    nats_bus: Bus,
) -> None:
    """Once its job is settled, a message's claim and result carry the settled window
    as their own TTL, and nats-server removes both when it ends; its status stays."""
    stream = f"KV_{subjects.SENDING_BUCKET}"
    if not (await nats_bus.js.stream_info(stream)).config.allow_msg_ttl:
        pytest.skip(
            "this nats-server (< 2.11) has no per-message TTL: a settled claim stays as "
            "long as its bucket keeps keys (README, Memory)"
        )
    publisher = Publisher(
        nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="a", settled_ttl=2.0
    )
    claim_t1 = claim("t1")
    await (await publisher.claim("m3", claim_t1))
    result = sent("m3")
    assert await publisher.settle(result, created=result.time, reply_to=None) == result
    await publisher.settled("m3")
    await nats_bus.nc.flush()
    for key in ("m3", subjects.result_key("m3")):
        last = await nats_bus.js.get_last_msg(stream, subjects.SENDING_KV_PREFIX + key)
        assert last.headers is not None
        assert last.headers.get("Nats-TTL") == "2s"
    assert await publisher.decided("m3") == result
    held = await publisher.holder("m3")
    assert held == claim_t1  # its holder's, unchanged: who held it stays on record
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = await nats_bus.js.stream_info(stream)
        if info.state.messages == 0:
            break
        await asyncio.sleep(0.2)
    assert (await nats_bus.js.stream_info(stream)).state.messages == 0
    assert await publisher.decided("m3") is None
    with pytest.raises(KeyNotFoundError):
        await publisher.holder("m3")
    status = await publisher.status("m3")
    assert status is not None
    assert status.state is contracts.MessageState.SENT  # the status is what stays


async def test_an_unsettled_claim_keeps_the_buckets_long_ttl(
    nats_bus: Bus, publisher: Publisher
) -> None:
    """A claim whose message is not settled carries no TTL of its own: it must outlive
    its job in SMS_SEND, however long the farm is away from the bus."""
    await (await publisher.claim("m4", claim("t1")))
    last = await nats_bus.js.get_last_msg(
        f"KV_{subjects.SENDING_BUCKET}", subjects.SENDING_KV_PREFIX + "m4"
    )
    assert "Nats-TTL" not in (last.headers or {})
    info = await nats_bus.js.stream_info(f"KV_{subjects.SENDING_BUCKET}")
    assert info.config.max_age == bus.UNSETTLED_CLAIM_TTL


async def test_a_job_handed_out_again_after_its_claim_left_is_acked_not_sent(
    nats_bus: Bus, publisher: Publisher
) -> None:
    """Its claim and result are gone with the settled window, its ack was lost: the copy
    JetStream hands out again (second delivery) reads the final status and is only acked."""
    job = contracts.SendJob(id="m5", to="+4917612345678", text="hi", created=contracts.utcnow())
    await nats_bus.js.publish(
        subjects.send_port("lte-1"), contracts.encode(job), headers={"Nats-Msg-Id": "m5"}
    )
    await publisher.put_status(
        contracts.MessageStatus(
            id="m5",
            to=job.to,
            state=contracts.MessageState.SENT,
            created=job.created,
            updated=contracts.utcnow(),
        )
    )
    sub = await nats_bus.js.pull_subscribe(
        subjects.send_port("lte-1"), durable="again", stream=subjects.SEND_STREAM
    )
    [first] = await sub.fetch(1, timeout=5)
    await first.nak()  # the first handling's ack never arrived: it comes back
    [again] = await sub.fetch(1, timeout=5)
    assert deliveries(first) == 1
    assert deliveries(again) == 2
    port = FakePort()  # no outcome scripted: a send would fail the handling
    handling = port_path(port, publisher, nats_bus.nc)
    ending = await handling.send(again, job, pinned=False, deliveries=deliveries(again))
    assert ending is Ending.ALREADY_SETTLED
    assert port.written == []
    assert port.results == []
    with pytest.raises(KeyNotFoundError):  # no claim was made for it
        await publisher.holder("m5")
    deadline = time.monotonic() + 10
    while (await nats_bus.js.stream_info(subjects.SEND_STREAM)).state.messages:
        assert time.monotonic() < deadline, "the job was never acked"
        await asyncio.sleep(0.1)


async def test_a_copy_taken_up_before_the_connection_was_lost_is_not_sent(
    tmp_path: Path,
) -> None:
    """nats-server restarts while a port holds a copy of a job it has not claimed yet: the
    client reconnects, the copy goes back unsent and unclaimed, and the fresh copy
    JetStream hands out then is sent."""
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    server.start()
    nc = None
    try:
        config = NatsConfig(url=server.url)
        nc = await bus.connect(config, name="stale-copy")
        js = nc.jetstream()
        acks = AckPublisher(nc)  # as the agent publishes: a claim's ack is a future
        await acks.start()
        publisher = Publisher(
            nc=nc, js=js, buckets=await bus.provision(js, config), agent="a", acks=acks
        )
        job = contracts.SendJob(id="m6", to="+4917612345678", text="hi", created=contracts.utcnow())
        await js.publish(subjects.send_port("lte-1"), contracts.encode(job))
        sub = await js.pull_subscribe(
            subjects.send_port("lte-1"), durable="stale", stream=subjects.SEND_STREAM
        )
        [copy] = await sub.fetch(1, timeout=5)
        client = nc

        restarted: list[bool] = []

        class RestartingPort(FakePort):
            async def attempt(self, job: contracts.SendJob, mark: PartHook) -> SendOutcome:
                if not restarted:  # the first copy: the server goes away meanwhile
                    restarted.append(True)
                    server.stop()
                    server.start()
                    deadline = time.monotonic() + 20
                    while not (client.is_connected and client.stats["reconnects"]):
                        assert time.monotonic() < deadline, "never reconnected"
                        await asyncio.sleep(0.1)
                return await super().attempt(job, mark)

        port = RestartingPort([SENT, SENT])
        handling = port_path(port, publisher, client)
        ending = await handling.send(copy, job, pinned=False, deliveries=deliveries(copy))
        assert ending is Ending.STALE
        assert port.written == []
        with pytest.raises(KeyNotFoundError):  # never claimed
            await publisher.holder("m6")
        [fresh] = await sub.fetch(1, timeout=10)  # given back: handed out again
        ending = await handling.send(fresh, job, pinned=False, deliveries=deliveries(fresh))
        assert ending is Ending.SENT
        assert port.written == [1]
    finally:
        if nc is not None:
            await nc.close()
        server.stop()


def port_path(port: FakePort, publisher: Publisher, client: Client) -> SendPath:
    """Port lte-1's send path as agent `a` runs it, its connection the client's."""
    return SendPath(
        port,
        publisher,
        name="lte-1",
        agent="a",
        boot="b1",
        resend_interrupted=False,
        held_delay=1.0,
        connection=lambda: int(client.stats["reconnects"]),
    )
