"""The modem agent on a real nats-server, driving the simulator's modems over real ptys."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec
import pytest
from nats.js.errors import NoKeysError
from smsgate import bus, contracts, subjects
from smsgate.config import AgentPort, SendPolicy

from tests.conftest import Bus
from tests.integration.farm import (
    AgentProcess,
    EventTap,
    agent_config,
    agent_running,
    job,
    publish_jobs,
    start_sim,
    stored_state,
    until,
)

OUTSIDE = "+4915112345678"


async def test_two_agents_share_any_work_over_all_ports(nats_bus: Bus) -> None:
    sim = await start_sim(ports=16, part_time=(0.005, 0.01))
    devices = sim.devices
    names = sorted(devices, key=lambda n: int(n.split("-")[1]))
    host_a = {n: devices[n] for n in names[:8]}
    host_b = {n: devices[n] for n in names[8:]}
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with (
            agent_running(agent_config(nats_bus.config, "host-a", host_a)),
            agent_running(agent_config(nats_bus.config, "host-b", host_b)),
        ):
            ids = await publish_jobs(
                nats_bus.nc, [job(OUTSIDE, f"m{i}", status_report=False) for i in range(2000)]
            )
            await until(lambda: tap.finished(ids), "2000 send results", 240)
    finally:
        await sim.stop()
    assert all(len(tap.results[i]) == 1 for i in ids)
    assert {r[0].status for r in tap.results.values()} == {contracts.SendStatus.SENT}
    per_port = tap.by_port()
    assert set(per_port) == set(devices)  # every port of both hosts took work
    # Equal modems get roughly equal shares: nobody idles while others queue.
    assert min(per_port.values()) >= 2000 / 16 / 3
    sent = sim.sent()
    assert len(sent) == 2000
    assert len({p.text for p in sent}) == 2000  # no part sent twice


async def test_pinned_jobs_go_only_to_their_port(nats_bus: Bus) -> None:
    sim = await start_sim(ports=3)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            ids = await publish_jobs(
                nats_bus.nc, [job(OUTSIDE, f"p{i}", port="lte-2") for i in range(20)]
            )
            await until(lambda: tap.finished(ids), "pinned results")
    finally:
        await sim.stop()
    assert tap.by_port() == {"lte-2": 20}
    assert {p.port for p in sim.sent()} == {"lte-2"}


async def test_pacing_and_daily_cap_follow_the_simulator_clock(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1, part_time=0.0)
    policy = SendPolicy(min_interval=0.3, jitter=0.1, daily_cap=4)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        config = agent_config(nats_bus.config, "a", sim.devices, policy=policy)
        async with agent_running(config):
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, f"c{i}") for i in range(6)])
            await until(lambda: tap.finished(ids[:4]), "four sends up to the cap")
            await asyncio.sleep(1.0)  # the capped port must not take the rest
            assert not any(i in tap.results for i in ids[4:])
            states = await nats_bus.buckets.ports.get("lte-1")
            state = contracts.decode(states.value or b"", contracts.PortState)
            assert state.status == contracts.PortStatus.PARKED
            assert state.last_error == "daily cap reached"
    finally:
        await sim.stop()
    times = [p.time for p in sim.sent()]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.3 for gap in gaps), gaps


async def test_multipart_between_virtual_sims_with_one_delivery_report(nats_bus: Bus) -> None:
    sim = await start_sim(ports=2)
    receiver_number = sim.modem("lte-2").sim.msisdn
    text = "Long message across parts. " * 12  # 324 GSM characters: 3 parts
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            [message_id] = await publish_jobs(
                nats_bus.nc, [job(receiver_number, text, port="lte-1")]
            )
            await until(lambda: bool(tap.reports and tap.inbound), "report and inbound SMS")
    finally:
        await sim.stop()
    [result] = tap.results[message_id]
    assert result.status == contracts.SendStatus.SENT
    assert len(result.parts) == 3
    [report] = tap.reports
    assert report.id == message_id
    assert report.state == contracts.DeliveryState.DELIVERED
    [inbound] = tap.inbound
    assert inbound.port == "lte-2"
    assert inbound.text == text
    assert inbound.parts == 3
    assert inbound.complete
    assert inbound.sender == sim.modem("lte-1").sim.msisdn


async def test_malformed_job_goes_to_dead_letter_and_agent_carries_on(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    dead = await nats_bus.js.subscribe(subjects.DEAD_SEND)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await nats_bus.js.publish(subjects.SEND_ANY, b'{"id": 5, "to": []}')
            await nats_bus.js.publish(subjects.SEND_ANY, b"\xff not json")
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "after the junk")])
            await until(lambda: tap.finished(ids), "the good job's result")
            letters = [await dead.next_msg(timeout=5) for _ in range(2)]
    finally:
        await sim.stop()
    reasons = [contracts.decode(m.data, contracts.DeadLetter).reason for m in letters]
    assert all(r.startswith("malformed job") for r in reasons), reasons
    assert "Expected `str`, got `int` - at `$.id`" in reasons[0]


async def test_hung_port_is_parked_and_others_carry_on(nats_bus: Bus) -> None:
    sim = await start_sim(ports=2)
    sim.set_fault("lte-1", hung=True)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, f"h{i}") for i in range(10)])
            await until(lambda: tap.finished(ids), "all results despite the hung port", 90)
            assert tap.by_port() == {"lte-2": 10}
            sim.set_fault("lte-1", hung=False)
            await until(
                lambda: any(e.port == "lte-1" and e.change == "ready" for e in tap.ports[-20:]),
                "lte-1 back in service",
                90,
            )
    finally:
        await sim.stop()


async def test_a_part_the_modem_never_answered_is_unknown_not_failed(nats_bus: Bus) -> None:
    """The PDU is written and `+CMGS` does not come within `send_timeout`: the network may
    have the message (here it does), so its result and stored status say `unknown`, with
    the reason, and it is not sent again."""
    sim = await start_sim(ports=1, part_time=(2.0, 2.0))  # slower than the agent waits
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        config = agent_config(nats_bus.config, "a", sim.devices, send_timeout=0.5)
        async with agent_running(config):
            [message_id] = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "slow answer")])
            await until(lambda: tap.finished([message_id]), "the result", 30)
            await until(lambda: bool(sim.sent()), "the part on the network", 30)
            counts = await stored_state(nats_bus, "lte-1", lambda s: s.unknown > 0)
    finally:
        await sim.stop()
    [result] = tap.results[message_id]
    assert result.status is contracts.SendStatus.UNKNOWN
    assert result.reason is not None
    assert result.reason.startswith(contracts.OUTCOME_UNKNOWN)
    stored = await nats_bus.buckets.messages.get(subjects.message_key(message_id))
    status = contracts.decode(stored.value or b"", contracts.MessageStatus)
    assert (status.state, status.reason) == (contracts.MessageState.UNKNOWN, result.reason)
    assert [p.text for p in sim.sent()] == ["slow answer"]  # once: it did reach the network
    assert (counts.failed, counts.unknown) == (0, 1)


async def test_sigkill_mid_send_loses_nothing_and_sends_nothing_twice(
    nats_bus: Bus, tmp_path: Path
) -> None:
    # Slow parts so the kill lands while the modems are busy.
    sim = await start_sim(ports=4, part_time=(0.3, 0.5), transport="tcp")
    names = sorted(sim.devices)
    doomed = AgentProcess(
        agent_config(nats_bus.config, "doomed", {n: sim.devices[n] for n in names[:2]}),
        tmp_path,
    )
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        doomed.start()
        await until(lambda: len(tap.ports) >= 2, "the doomed agent's ports up", 30)
        ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, f"k{i}") for i in range(30)])

        def in_flight() -> bool:  # a PDU is in a doomed modem, its +CMGS not yet given
            stats = [sim.modem(n).stats for n in names[:2]]
            return len(sim.sent()) >= 2 and any(s.pdus_received > s.parts_sent for s in stats)

        await until(in_flight, "a send under way", 30)
        doomed.kill()
        # The doomed agent never comes back: its sends are decided once it has been silent
        # for its lease and holder_timeout.
        survivor = agent_config(
            nats_bus.config, "survivor", {n: sim.devices[n] for n in names[2:]}, holder_timeout=1.0
        )
        async with agent_running(survivor):
            await until(lambda: tap.finished(ids), "a result for every message", 120)
    finally:
        await sim.stop()
    results = {i: tap.results[i] for i in ids}
    twice = {i: r for i, r in results.items() if len(r) != 1}
    assert not twice  # exactly one result each
    texts = [p.text for p in sim.sent()]
    assert len(texts) == len(set(texts))  # no part reached the network twice
    interrupted = [r[0] for r in results.values() if r[0].reason == "interrupted"]
    sent = [r[0] for r in results.values() if r[0].status == contracts.SendStatus.SENT]
    assert len(interrupted) + len(sent) == 30
    assert all(r.status is contracts.SendStatus.UNKNOWN for r in interrupted)
    assert 1 <= len(interrupted) <= 2  # the kill lands mid-send; one in flight per port
    sent_texts = {f"k{i}" for i, m in enumerate(ids) if results[m][0].status == "sent"}
    assert sent_texts <= set(texts)


async def test_port_control_disable_enable(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            tap = EventTap()
            await tap.start(nats_bus.nc)

            async def command(action: str) -> contracts.ControlReply:
                reply = await nats_bus.nc.request(
                    subjects.port_control("lte-1"),
                    contracts.encode(contracts.PortCommand(action=action)),  # type: ignore[arg-type]
                    timeout=5,
                )
                return contracts.decode(reply.data, contracts.ControlReply)

            await until(lambda: any(e.change == "ready" for e in tap.ports), "port ready", 30)
            disabled = await command("disable")
            assert disabled.ok
            assert disabled.state is not None
            assert disabled.state.status == contracts.PortStatus.DISABLED
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "while disabled")])
            await asyncio.sleep(0.5)
            assert not tap.finished(ids)
            enabled = await command("enable")
            assert enabled.state is not None
            assert enabled.state.status in {contracts.PortStatus.READY, contracts.PortStatus.BUSY}
            await until(lambda: tap.finished(ids), "sent after enable")
            bad = await nats_bus.nc.request(subjects.port_control("lte-1"), b"{}", timeout=5)
            assert not contracts.decode(bad.data, contracts.ControlReply).ok
    finally:
        await sim.stop()


def test_job_schema_is_the_wire_contract() -> None:
    data = contracts.encode(job("+1555", "x"))
    decoded = msgspec.json.decode(data)
    assert decoded["v"] == 1
    assert decoded["status_report"] is True


async def test_ports_bound_by_identity_follow_their_modem(nats_bus: Bus) -> None:
    sim = await start_sim(ports=3)
    link_dir = str(Path(sim.devices["lte-1"]).parent)
    by_imei = AgentPort(name="alpha", device=f"{link_dir}/lte-*", imei=sim.modem("lte-3").imei)
    by_iccid = AgentPort(
        name="beta", device=f"{link_dir}/lte-*", iccid=sim.modem("lte-1").sim.iccid
    )
    absent = AgentPort(name="gamma", device=f"{link_dir}/lte-*", imei="356900000000999")
    config = agent_config(nats_bus.config, "a", {"lte-2": sim.devices["lte-2"]})
    config = msgspec.structs.replace(
        config,
        agent=msgspec.structs.replace(
            config.agent, ports=[*config.agent.ports, by_imei, by_iccid, absent]
        ),
    )
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(config):
            ids = await publish_jobs(
                nats_bus.nc,
                [job(OUTSIDE, "to alpha", port="alpha"), job(OUTSIDE, "to beta", port="beta")],
            )
            await until(lambda: tap.finished(ids), "sends on identity-bound ports")
            states = {
                key: contracts.decode(
                    (await nats_bus.buckets.ports.get(key)).value or b"", contracts.PortState
                )
                for key in ("alpha", "beta")
            }
    finally:
        await sim.stop()
    sent = {p.text: p.port for p in sim.sent()}
    assert sent == {"to alpha": "lte-3", "to beta": "lte-1"}
    assert states["alpha"].device == sim.devices["lte-3"]
    assert states["beta"].iccid == sim.modem("lte-1").sim.iccid
    # Not found: no device guessed; shown down, still looking (tests/integration/test_hotplug.py).
    gamma = [e.state for e in tap.ports if e.port == "gamma"]
    assert all(s.status is contracts.PortStatus.DOWN for s in gamma)
    assert not any(p.port == "gamma" for p in sim.sent())


async def test_pinned_job_fails_when_its_port_stays_down(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1)
    sim.set_fault("lte-1", hung=True)  # never comes up
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            stale = msgspec.structs.replace(job(OUTSIDE, "never", port="lte-1"), port_wait=0.5)
            ids = await publish_jobs(nats_bus.nc, [stale])
            await until(lambda: tap.finished(ids), "the pinned job to fail", 30)
    finally:
        await sim.stop()
    [result] = tap.results[ids[0]]
    assert result.status == contracts.SendStatus.FAILED
    assert result.reason == "port unavailable"
    assert sim.sent() == []


async def test_ussd_balance_through_the_agent(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1, ussd_delay=0.05)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await until(lambda: any(e.change == "ready" for e in tap.ports), "port ready", 30)
            reply = await nats_bus.nc.request(
                subjects.ussd("lte-1"),
                contracts.encode(contracts.UssdRequest(code="*100#", timeout=10)),
                timeout=15,
            )
    finally:
        await sim.stop()
    answer = contracts.decode(reply.data, contracts.ControlReply)
    assert answer.ok, answer.error
    assert answer.text is not None
    assert "balance" in answer.text.lower()


async def test_inbound_parts_survive_an_agent_restart(nats_bus: Bus) -> None:
    """Parts already taken off the SIM are kept in KV: a new agent finishes the message."""
    from smsgate.pdu import Concat, Deliver, decode, encode_deliver, split_for_deliver
    from smsgate_agent.port import PortWorker
    from smsgate_agent.publisher import Publisher

    text = "你好，这是一条很长的消息。" * 12
    chunks = split_for_deliver(text)
    assert len(chunks) == 3
    stamp = contracts.utcnow().replace(microsecond=0)
    parts = []
    for i, chunk in enumerate(chunks, 1):
        pdu = encode_deliver(
            "+8613800138000",
            chunk,
            timestamp=stamp,
            concat=Concat(reference=9, total=3, sequence=i),
        )
        decoded = decode(pdu)
        assert isinstance(decoded, Deliver)
        parts.append(decoded)
    config = agent_config(nats_bus.config, "a", {"lte-1": "/dev/null"})
    publisher = Publisher(nc=nats_bus.nc, js=nats_bus.js, buckets=nats_bus.buckets, agent="a")
    tap = EventTap()
    await tap.start(nats_bus.nc)

    before = PortWorker(config.agent, config.agent.ports[0], publisher)
    await before.receiving.on_inbound(parts[0])
    await before.receiving.on_inbound(parts[2])
    after = PortWorker(config.agent, config.agent.ports[0], publisher)  # the agent restarted
    await after.restore_parts()
    await after.receiving.on_inbound(parts[1])
    await until(lambda: bool(tap.inbound), "the joined message")
    [inbound] = tap.inbound
    assert inbound.text == text
    assert (inbound.parts, inbound.complete, inbound.port) == (3, True, "lte-1")
    with pytest.raises(NoKeysError):
        await nats_bus.buckets.inbound_parts.keys()  # nothing left behind
    marker = await nats_bus.js.get_last_msg(
        f"KV_{subjects.INBOUND_PARTS_BUCKET}",
        subjects.INBOUND_PARTS_KV_PREFIX + f"lte-1.{b'+8613800138000'.hex()}.9.3.2",
    )
    assert marker.headers is not None  # and even the markers go, a minute later
    assert marker.headers.get("Nats-TTL") == f"{bus.REMOVED_KEY_TTL:g}s"


async def test_a_job_claimed_before_is_settled_by_its_status_not_sent_again(
    nats_bus: Bus,
) -> None:
    """Two jobs whose claims exist (an agent handed them to a modem, then its ack was lost
    or it died): the one whose status is final is only acked; the other's outcome is
    `unknown` (`interrupted`). A claim that was released (nothing reached a network) is
    taken over."""
    kv = await nats_bus.js.key_value(subjects.SENDING_BUCKET)
    messages = await nats_bus.js.key_value(subjects.MESSAGES_BUCKET)
    done, dead, released = job(OUTSIDE, "done"), job(OUTSIDE, "dead"), job(OUTSIDE, "again")
    for claimed in (done, dead, released):
        await kv.create(subjects.message_key(claimed.id), b"old-agent")
    await kv.delete(subjects.message_key(released.id))
    sent = contracts.MessageStatus(
        id=done.id,
        to=done.to,
        state=contracts.MessageState.SENT,
        created=done.created,
        updated=done.created,
    )
    await messages.put(subjects.message_key(done.id), contracts.encode(sent))
    sim = await start_sim(ports=1)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await publish_jobs(nats_bus.nc, [done, dead, released])
            await until(lambda: tap.finished([dead.id, released.id]), "two results", 30)
    finally:
        await sim.stop()
    assert [p.text for p in sim.sent()] == ["again"]  # neither claimed job went out again
    assert done.id not in tap.results  # its result was published before
    assert [(r.status, r.reason) for r in tap.results[dead.id]] == [
        (contracts.SendStatus.UNKNOWN, "interrupted")
    ]
    assert [r.status for r in tap.results[released.id]] == [contracts.SendStatus.SENT]
    stream = await nats_bus.js.stream_info(subjects.SEND_STREAM)
    assert stream.state.messages == 0  # every job acked, the finished one included
