"""Delivery reports across agent restarts, crashes and moved SIMs.

Every message that asked for a report ends in exactly one report event, matched to its
caller's id, and that report reaches the callback. Real processes: nats-server,
`smsgate agent`, `smsgate callback`; the simulator's modems over TCP (`socket://`).

The simulator's own reports are put off by an hour: the test hands each status report to
the SIM itself, made as the network makes it from the TP-MR the agent published, so the
test decides which agent process reads which report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
from collections import Counter

from nats.aio.client import Client
from smsgate import contracts
from smsgate.config import NatsConfig
from smsgate.contracts import DeliveryState
from smsgate.embedded import EmbeddedNats
from smsgate.pdu import encode_status_report
from smsgate_sim.simulator import Simulator

from tests.integration.callback_fixtures import Hit, Receiver, callback_config
from tests.integration.farm import EventTap, agent_config, publish_jobs, start_sim, until
from tests.reliability.procs import Processes

OUTSIDE = "+4915112345678"
LONG = "Three parts across two restarts. " * 10  # 330 GSM characters
NEVER = 3600.0  # the simulator's own report delay: the test sends every report itself


def message(text: str, port: str, caller: str) -> contracts.SendJob:
    """A job as the API makes it for one recipient: the message id is the caller's id."""
    return contracts.SendJob(
        id=caller,
        to=OUTSIDE,
        text=text,
        port=port,
        user="alice",
        caller_id=caller,
        created=contracts.utcnow(),
    )


def hand_report(sim: Simulator, port: str, reference: int, to: str = OUTSIDE) -> None:
    """The network sends a `delivered` status report to the SIM in `port`'s modem."""
    now = dt.datetime.now().astimezone().replace(microsecond=0)
    pdu = encode_status_report(
        reference, to, timestamp=now, discharge_time=now, status=0, smsc=sim.config.smsc
    )
    sim.network.hand(sim.modem(port), "report", pdu)


def unread(sim: Simulator) -> int:
    """Status reports on the SIMs that no agent has read (and deleted) yet."""
    return sum(modem.memories["SR"].used for modem in sim.modems.values())


class Farm:
    """The test's view: events as published (duplicates too) and callbacks as received."""

    def __init__(self, sim: Simulator, tap: EventTap, receiver: Receiver) -> None:
        self.sim, self.tap, self.receiver = sim, tap, receiver

    def references(self, job: contracts.SendJob) -> list[int]:
        [result] = self.tap.results[job.id]
        assert result.status is contracts.SendStatus.SENT, result
        return [part.reference for part in result.parts if part.reference is not None]

    def hand(self, job: contracts.SendJob, *, part: int = 0, port: str | None = None) -> None:
        hand_report(self.sim, port or job.port or "", self.references(job)[part])

    def reported(self) -> Counter[str]:
        return Counter(report.id for report in self.tap.reports)

    def callbacks(self) -> list[dict[str, str]]:
        return [dict(hit.params) for hit in self.receiver.hits if _is_report(hit)]

    async def settled(self, reports: int, what: str) -> None:
        """Until `reports` report events are out and every report on a SIM was read."""
        await until(lambda: len(self.tap.reports) >= reports and unread(self.sim) == 0, what, 90)


def _is_report(hit: Hit) -> bool:
    return dict(hit.params).get("type") == "SMS-Status-Report"


async def start(
    procs: Processes, client: Client, sim: Simulator, receiver: Receiver, nats: NatsConfig
) -> Farm:
    tap = EventTap()
    await tap.start(client)
    procs.start("callback", "callback", callback_config(nats, url=receiver.url))
    return Farm(sim, tap, receiver)


async def test_reports_survive_sigterm_and_sigkill_between_sends_and_reports(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    """20 messages and a 3-part one; their reports come before, across a SIGTERM restart
    and across a SIGKILL, the 3-part one's straddling both."""
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp", report_delay=NEVER)
    receiver = Receiver()
    await receiver.start()
    try:
        farm = await start(procs, client, sim, receiver, nats)
        config = agent_config(nats, "host-a", sim.devices, report_sweep=0.5)
        agent = procs.start("agent", "host-a", config)
        singles = [message(f"single {i}", f"lte-{1 + i % 2}", f"c{i}") for i in range(20)]
        long = message(LONG, "lte-1", "c-long")
        jobs = [*singles, long]
        await publish_jobs(client, jobs)
        await until(lambda: farm.tap.finished(j.id for j in jobs), "every send result", 90)
        assert len(farm.references(long)) == 3

        for job in singles[:8]:
            farm.hand(job)
        farm.hand(long, part=0)
        await farm.settled(8, "reports read by the first run")

        assert await agent.terminate() == 0  # a rolling upgrade's stop
        for job in singles[8:14]:
            farm.hand(job)  # on the SIMs while no agent runs
        farm.hand(long, part=1)
        agent = procs.start("agent", "host-a", config)
        await farm.settled(14, "reports read after the restart")
        assert farm.reported()[long.id] == 0  # two parts of three reported

        agent.kill()  # a crash
        for job in singles[14:]:
            farm.hand(job)
        farm.hand(long, part=2)
        agent = procs.start("agent", "host-a", config)
        await farm.settled(21, "reports read after the crash")
        await until(lambda: len(farm.callbacks()) >= 21, "every report at the callback", 60)
        await asyncio.sleep(1.0)  # room for a duplicate to show
    finally:
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()

    assert farm.reported() == Counter({job.id: 1 for job in jobs})  # published once each
    by_id = {report.id: report for report in farm.tap.reports}
    for job in jobs:
        report = by_id[job.id]
        assert (report.state, report.caller_id, report.user) == (
            DeliveryState.DELIVERED,
            job.caller_id,
            "alice",
        )
        assert report.port == job.port
    assert by_id[long.id].part_count == 3
    callbacks = farm.callbacks()
    # A callback names the recipient's own message (issue 16, item 2), as the event does.
    assert sorted(c["id"] for c in callbacks) == sorted(job.id for job in jobs)
    assert {c["status"] for c in callbacks} == {"Message received on handset"}


async def test_a_sim_moved_to_another_port_and_another_host_keeps_its_reports(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    """After the sends, the SIMs change places: lte-2's SIM goes to port lte-1 of the same
    agent, and lte-1's SIM to port lte-9 of another agent process. Their reports are
    matched there, to the messages sent from where the SIMs were."""
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp", report_delay=NEVER)
    receiver = Receiver()
    await receiver.start()
    try:
        farm = await start(procs, client, sim, receiver, nats)
        host_a = procs.start("agent", "host-a", agent_config(nats, "host-a", sim.devices))
        one, two = message("from one", "lte-1", "c1"), message("from two", "lte-2", "c2")
        long = message(LONG, "lte-1", "c-long")
        await publish_jobs(client, [one, two, long])
        await until(lambda: farm.tap.finished([one.id, two.id, long.id]), "send results", 90)
        farm.hand(long, part=0)
        await farm.settled(0, "the first part's report read where it was sent")
        assert await host_a.terminate() == 0

        swapped = {"lte-1": sim.devices["lte-2"]}  # lte-2's SIM, now in port lte-1
        procs.start("agent", "host-a", agent_config(nats, "host-a", swapped))
        moved = {"lte-9": sim.devices["lte-1"]}  # lte-1's SIM, now on host-b
        procs.start("agent", "host-b", agent_config(nats, "host-b", moved))
        farm.hand(two)  # the modem that was lte-2's
        farm.hand(one)  # the modem that was lte-1's
        farm.hand(long, part=1)
        farm.hand(long, part=2)
        await farm.settled(3, "reports read in the SIMs' new ports")
        await until(lambda: len(farm.callbacks()) >= 3, "every report at the callback", 60)
        await asyncio.sleep(1.0)
    finally:
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()

    assert farm.reported() == Counter({one.id: 1, two.id: 1, long.id: 1})
    by_id = {report.id: report for report in farm.tap.reports}
    assert (by_id[one.id].port, by_id[one.id].report_port) == ("lte-1", "lte-9")
    assert (by_id[two.id].port, by_id[two.id].report_port) == ("lte-2", "lte-1")
    assert (by_id[long.id].port, by_id[long.id].report_port) == ("lte-1", "lte-9")
    assert {r.state for r in by_id.values()} == {DeliveryState.DELIVERED}
    assert by_id[one.id].imsi == sim.modem("lte-1").sim.imsi  # the SIM it went out on
    callbacks = {c["id"]: c for c in farm.callbacks()}
    assert set(callbacks) == {"c1", "c2", "c-long"}
    assert callbacks["c1"]["portname"] == "lte-1"


async def test_an_unknown_report_is_unmatched_and_a_silent_message_expires_once(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    """Two agents sweep the same ledger: the silent message's `expired`, and the stray
    report's `unmatched`, are each published once and reach the callback."""
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp", report_delay=NEVER)
    receiver = Receiver()
    await receiver.start()
    stranger = "+4930999999"
    try:
        farm = await start(procs, client, sim, receiver, nats)
        ports = sorted(sim.devices)
        for index, port in enumerate(ports):
            name = f"host-{index}"
            config = agent_config(
                nats,
                name,
                {port: sim.devices[port]},
                report_timeout=3.0,
                report_unmatched_after=1.5,
                report_sweep=0.3,
            )
            procs.start("agent", name, config)
        silent = message("nobody answers", "lte-1", "c-silent")
        await publish_jobs(client, [silent])
        await until(lambda: farm.tap.finished([silent.id]), "the send result", 90)
        hand_report(sim, "lte-2", 77, to=stranger)  # for nothing any agent sent
        await until(lambda: len(farm.tap.reports) >= 2, "expired and unmatched", 60)
        await until(lambda: len(farm.callbacks()) >= 2, "both at the callback", 60)
        await asyncio.sleep(2.0)  # several more sweeps of both agents
    finally:
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()

    assert len(farm.tap.reports) == 2, farm.tap.reports
    expired, unmatched = sorted(farm.tap.reports, key=lambda r: r.state != "expired")
    assert (expired.id, expired.state, expired.caller_id) == (
        silent.id,
        DeliveryState.EXPIRED,
        "c-silent",
    )
    assert expired.reason == "no delivery report within 3s"
    assert (unmatched.state, unmatched.to, unmatched.reference, unmatched.report_port) == (
        DeliveryState.UNMATCHED,
        stranger,
        77,
        "lte-2",
    )
    callbacks = {c["status"]: c for c in farm.callbacks()}
    assert callbacks["Message validity period expired"]["id"] == "c-silent"
    gone = callbacks["Delivery report not matched"]
    assert (gone["num"], gone["id"]) == (stranger, unmatched.id)
    assert urllib.parse.unquote(gone["reason"]).startswith("TP-MR 77, status 0")
