"""What a NATS outage leaves behind, made on purpose: the races the cluster scenario can hit.

- A job handed out a second time while a port still holds it (NATS was away longer than
  `ack_wait`, so the keep-alive could not reach it): the second copy must not be reported
  `interrupted` over the result the first port holds.
- A caller's id claimed in `sms_messages` whose job never reached the stream (the publish
  failed, and so did the release of the claim): a retry of the request must queue it.
"""

from __future__ import annotations

import urllib.parse

from smsgate import contracts, subjects
from smsgate.config import ApiUser

from tests.conftest import Bus
from tests.integration.api_fixtures import api_config, running_api
from tests.integration.farm import agent_config, agent_running, job, start_sim
from tests.reliability.ledger import OUTSIDE, stream_results, until_async


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
