"""The agent's results owed to the bus, on a real nats-server: one result per message even
when a publish fails between deciding a result and publishing it.

Found on nats-server 2.11 (tests/multihost/test_upgrade.py::test_minority_nats_node_cut):
a result decided while the stream's leader was cut off (no ack) was kept in the spool; its
job came back while the bus still refused it, was taken for one no port holds and judged
`unknown`, which lost to the decided `sent` and then removed the `sent` from the spool and
acked the job: the message never got a result event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from smsgate import contracts
from smsgate_agent.backlog import Backlog
from smsgate_agent.publisher import Publisher
from smsgate_agent.spool import Spool

from tests.conftest import Bus
from tests.reliability.ledger import stream_results


@dataclass
class Handle:
    """The job as the work queue handed it out: how it ended."""

    acked: bool = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self, delay: float | None = None) -> None:
        raise AssertionError("a job whose result is owed is never given back")

    async def in_progress(self) -> None:
        pass

    async def term(self) -> None:
        raise AssertionError("a job whose result is owed is never terminated")


@dataclass
class RefusingPublisher(Publisher):
    """The real publisher, behind a bus that times out while `refusing` (a cut leader)."""

    refusing: bool = False

    async def settle(self, result: contracts.SendResult, **kwargs: object) -> contracts.SendResult:
        if self.refusing:
            raise TimeoutError("nats: timeout")
        return await super().settle(result, **kwargs)  # type: ignore[arg-type]


def result(
    message_id: str, status: contracts.SendStatus, reason: str | None = None
) -> contracts.SendResult:
    return contracts.SendResult(
        event_id=f"{message_id}:result",
        port="lte-1",
        time=contracts.utcnow(),
        id=message_id,
        to="+4915112345678",
        status=status,
        reason=reason,
    )


CREATED = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


async def test_a_result_the_bus_still_refuses_when_its_job_comes_back_is_held_not_judged(
    nats_bus: Bus, tmp_path: Path
) -> None:
    publisher = RefusingPublisher(
        nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="a", refusing=True
    )
    backlog = Backlog(publisher, Spool(tmp_path / "spool.sqlite"))
    sent = result("m1", contracts.SendStatus.SENT)
    first = Handle()
    assert await backlog.result(sent, created=CREATED, reply_to=None, handle=first) is None

    again = Handle()  # the job handed out again while the bus still refuses
    assert await backlog.settle_pending("m1", again)  # one waited: not to be judged anew
    assert not again.acked
    assert backlog.pending("m1") is not None

    publisher.refusing = False
    assert await backlog.replay() == 0
    assert again.acked
    assert (await stream_results(nats_bus.js))["m1"] == [sent]


async def test_a_result_decided_but_never_published_is_published_by_whoever_finds_it(
    nats_bus: Bus,
) -> None:
    publisher = Publisher(nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="a")
    sent = result("m2", contracts.SendStatus.SENT)
    assert await publisher.decide(sent) == sent  # its publisher failed before publishing it

    late = result("m2", contracts.SendStatus.UNKNOWN, "interrupted")
    assert await publisher.settle(late, created=CREATED, reply_to=None) == sent

    assert (await stream_results(nats_bus.js))["m2"] == [sent]
    status = await publisher.status("m2")
    assert status is not None
    assert status.state is contracts.MessageState.SENT
