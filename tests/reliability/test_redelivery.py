"""What a NATS outage leaves behind, made on purpose: the races the cluster scenario can hit.

- A job handed out a second time while a port still holds it (NATS was away longer than
  `ack_wait`, so the keep-alive could not reach it): the second copy must not be reported
  `interrupted` over the result the first port holds.
- A caller's id claimed in `sms_messages` whose job never reached the stream (the publish
  failed, and so did the release of the claim): a retry of the request must queue it.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import msgspec
from smsgate import contracts, subjects
from smsgate.config import ApiUser
from smsgate.contracts import Lease
from smsgate_agent.liveness import Claim
from smsgate_agent.publisher import Publisher

from tests.conftest import Bus
from tests.integration.api_fixtures import api_config, running_api
from tests.integration.farm import agent_config, agent_running, job, start_sim
from tests.reliability.ledger import OUTSIDE, stream_results, until_async, until_results


async def test_a_job_handed_out_twice_keeps_the_result_of_the_port_that_sent_it(
    nats_bus: Bus,
) -> None:
    sim = await start_sim(ports=2, transport="tcp", part_time=1.0)
    twice = job(OUTSIDE, "handed out twice", status_report=False)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices, ack_wait=2.0)):
            # Two copies of one job, as a redelivery makes them: the second reaches the other
            # port while the first is still with the modem.
            for copy in ("first", "second"):
                await nats_bus.js.publish(
                    subjects.SEND_ANY,
                    contracts.encode(twice),
                    headers={"Nats-Msg-Id": f"{twice.id}-{copy}"},
                )

            async def settled() -> bool:
                info = await nats_bus.js.stream_info(subjects.SEND_STREAM)
                return twice.id in await stream_results(nats_bus.js) and info.state.messages == 0

            await until_async(settled, "the result, and both copies gone", 30)
    finally:
        await sim.stop()
    [result] = (await stream_results(nats_bus.js))[twice.id]
    print(f"[redelivery] a job handed out twice: {result.status} ({result.reason})")
    assert result.status is contracts.SendStatus.SENT
    assert len(sim.sent()) == 1


async def test_a_claim_left_behind_is_queued_when_the_request_is_retried(nats_bus: Bus) -> None:
    user = ApiUser(name="u", password="pw")
    left = contracts.SendJob(
        id="left-behind", to=OUTSIDE, text="claimed, never queued", created=contracts.utcnow()
    )
    # What a request leaves when NATS goes away after the claim: `queued`, and no job.
    status = contracts.MessageStatus(
        id=left.id,
        to=left.to,
        state=contracts.MessageState.QUEUED,
        user="u",
        created=left.created,
        updated=left.created,
    )
    await nats_bus.buckets.messages.put(left.id, contracts.encode(status))
    query = urllib.parse.urlencode(
        {"username": "u", "password": "pw", "phonenumber": OUTSIDE, "message": "x", "id": left.id}
    )
    async with running_api(nats_bus, api_config(nats_bus.config, users=[user])) as api:
        answers = [(await api.client.get(f"/sendsms?{query}")).status_code for _ in range(3)]
        queued = [j for _, j in await api.jobs() if j.id == left.id]
    print(f"[redelivery] a claim left behind: answers {answers}, jobs queued {len(queued)}")
    assert answers == [200, 200, 200]
    assert len(queued) == 1  # queued by the first retry, and only once


async def _held_by_another_agent(nats_bus: Bus, lease_age: float) -> contracts.SendJob:
    """A job whose claim host-x holds (its modem has it), host-x's lease renewed
    `lease_age` seconds ago; the job handed out again, as after host-x was cut off."""
    held = job(OUTSIDE, f"held by host-x {lease_age}", status_report=False)
    now = time.time()
    claim = Claim(agent="host-x", boot="x1", port="lte-9", token="t", time=now - lease_age)
    lease = Lease(agent="host-x", boot="x1", renewed=now - lease_age, lease=2.0)
    await nats_bus.buckets.sending.create(subjects.message_key(held.id), msgspec.json.encode(claim))
    await nats_bus.buckets.agents.put("host-x", msgspec.json.encode(lease))
    sending = contracts.MessageStatus(
        id=held.id,
        to=held.to,
        state=contracts.MessageState.SENDING,
        port="lte-9",
        agent="host-x",
        created=held.created,
        updated=held.created,
    )
    await nats_bus.buckets.messages.put(held.id, contracts.encode(sending))
    await nats_bus.js.publish(
        subjects.SEND_ANY, contracts.encode(held), headers={"Nats-Msg-Id": held.id}
    )
    return held


async def test_a_send_held_by_an_agent_that_may_be_alive_is_left_to_it(nats_bus: Bus) -> None:
    """Issue 20: the holder is cut off, not dead. Another agent must not decide the send;
    the holder's late result is the only one, and nothing is sent twice."""
    sim = await start_sim(ports=1, transport="tcp")
    held = await _held_by_another_agent(nats_bus, lease_age=5.0)  # stale: not heard from
    config = agent_config(nats_bus.config, "host-y", sim.devices, ack_wait=1.0, holder_timeout=60.0)
    try:
        async with agent_running(config):
            js = nats_bus.js

            async def left_to_its_holder() -> bool:  # the interim status says why
                entry = await nats_bus.buckets.messages.get(held.id)
                status = contracts.decode(entry.value or b"", contracts.MessageStatus)
                return status.reason is not None and "host-x" in status.reason

            await until_async(left_to_its_holder, "the interim status", 30)
            await asyncio.sleep(3.0)  # handed out again and again meanwhile
            assert held.id not in await stream_results(js)
            # host-x comes back with the truth: its result is decided and published.
            holder = Publisher(nc=nats_bus.nc, js=js, buckets=nats_bus.buckets, agent="host-x")
            sent = contracts.SendResult(
                event_id=f"{held.id}:result",
                port="lte-9",
                time=contracts.utcnow(),
                id=held.id,
                to=held.to,
                status=contracts.SendStatus.SENT,
            )
            assert await holder.settle(sent, created=held.created, reply_to=None) == sent

            async def acked() -> bool:
                info = await js.stream_info(subjects.SEND_STREAM)
                return info.state.messages == 0

            await until_async(acked, "the job acknowledged by host-y", 30)
        # A result decided by someone else first wins over a late one: never two.
        late = msgspec.structs.replace(sent, status=contracts.SendStatus.FAILED, reason="late")
        assert await holder.settle(late, created=held.created, reply_to=None) == sent
    finally:
        await sim.stop()
    [result] = (await stream_results(nats_bus.js))[held.id]
    stored = contracts.decode(
        (await nats_bus.buckets.messages.get(held.id)).value or b"", contracts.MessageStatus
    )
    print(f"[redelivery] held by a silent agent: {result.status}, stored {stored.state}")
    assert result.status is contracts.SendStatus.SENT
    assert stored.state is contracts.MessageState.SENT
    assert not sim.sent()  # host-y never sent it


async def test_a_send_held_by_an_agent_gone_for_good_is_interrupted(nats_bus: Bus) -> None:
    """The holder's modem may have sent it and nobody reachable knows: the one result is
    `unknown` (`interrupted`), stored so, and the holder's late `sent` does not make a
    second one."""
    sim = await start_sim(ports=1, transport="tcp")
    held = await _held_by_another_agent(nats_bus, lease_age=10.0)
    config = agent_config(nats_bus.config, "host-y", sim.devices, ack_wait=1.0, holder_timeout=2.0)
    try:
        async with agent_running(config):
            [result] = (await until_results(nats_bus.js, [held.id], 30))[held.id]
    finally:
        await sim.stop()
    stored = contracts.decode(
        (await nats_bus.buckets.messages.get(held.id)).value or b"", contracts.MessageStatus
    )
    assert result.status is contracts.SendStatus.UNKNOWN
    assert result.reason == "interrupted"
    assert stored.state is contracts.MessageState.UNKNOWN
    assert stored.reason == "interrupted"
    assert not sim.sent()
    # host-x comes back with its modem's truth, too late: the decided result stands.
    holder = Publisher(nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="host-x")
    late = msgspec.structs.replace(result, port="lte-9", status=contracts.SendStatus.SENT)
    assert await holder.settle(late, created=held.created, reply_to=None) == result
    assert (await stream_results(nats_bus.js))[held.id] == [result]
