"""The modem driver against virtual modems over a real pty (and TCP): init, send, receive.

Every send is checked against the simulator's own log of the parts its network accepted,
so a part lost or sent twice shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from smsgate.config import AgentPort, SimConfig
from smsgate.pdu import Deliver, ReportState, StatusReport
from smsgate_agent.link import ModemInfo, ModemStatus, ModemTimings
from smsgate_agent.modem import Modem
from smsgate_agent.sending import SendOutcome
from smsgate_sim.simulator import Simulator
from smsgate_sim.stats import SentPart

PORT = "lte-1"
OUTSIDE = "+4917612345678"

FAST = ModemTimings(
    poll_interval=0.5,
    sweep_interval=1.0,
    prompt_timeout=1.0,
    probe_timeout=0.3,
    probe_tries=2,
    reset_wait=0.1,
    busy_wait=20.0,
    busy_delay=(0.02, 0.1),
    down_delay=(0.05, 0.3),
    retry_delay=(0.01, 0.05),
    urc_poll_gap=0.1,
    settle_time=0.05,
    quiet_time=0.02,
)


def sim_config(**overrides: Any) -> SimConfig:
    base: dict[str, Any] = {
        "ports": 1,
        "part_time": 0.001,
        "report_delay": 0.001,
        "delivery_delay": 0.001,
        "ussd_delay": 0.01,
        "reset_time": 0.1,
        "control": "",
        "seed": 7,
    }
    base.update(overrides)
    return SimConfig(**base)


@dataclass
class Rig:
    """A simulator, one Modem driving its first port, and what the Modem handed over."""

    sim: Simulator
    modem: Modem
    inbound: list[Deliver] = field(default_factory=list)
    reports: list[StatusReport] = field(default_factory=list)
    states: list[ModemInfo] = field(default_factory=list)
    inbound_failures: int = 0

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until `check` holds; the test's own timeout bounds it."""
        # Conditions look at the simulator's state, which announces nothing: poll it.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def ready(self) -> None:
        await self.until(lambda: self.modem.ready)

    def sent(self) -> list[SentPart]:
        return self.sim.sent(PORT)

    @property
    def stored(self) -> int:
        memories = self.sim.modem(PORT).memories
        return sum(memory.used for memory in memories.values())


@asynccontextmanager
async def rig(
    config: SimConfig | None = None,
    *,
    port: dict[str, Any] | None = None,
    timings: ModemTimings = FAST,
    limit: float = 60.0,
    before: Callable[[Simulator], Awaitable[None]] | None = None,
) -> AsyncIterator[Rig]:
    sim = Simulator(config or sim_config())
    await sim.start()
    if before is not None:
        await before(sim)
    holder: list[Rig] = []

    async def on_inbound(message: Deliver) -> None:
        current = holder[0]
        if current.inbound_failures > 0:
            current.inbound_failures -= 1
            raise RuntimeError("bus unavailable")
        current.inbound.append(message)

    async def on_report(report: StatusReport) -> None:
        holder[0].reports.append(report)

    def on_state(info: ModemInfo) -> None:
        holder[0].states.append(info)

    modem = Modem(
        AgentPort(name=PORT, device=sim.devices[PORT], **(port or {})),
        command_timeout=1.0,
        send_timeout=2.0,
        on_inbound=on_inbound,
        on_report=on_report,
        on_state=on_state,
        timings=timings,
    )
    holder.append(Rig(sim, modem))
    task = asyncio.create_task(modem.run())
    try:
        async with asyncio.timeout(limit):
            yield holder[0]
    finally:
        await modem.close()
        await sim.stop()
        assert task.done()


def check_sent_log(outcomes: list[tuple[str, str, SendOutcome]], log: list[SentPart]) -> None:
    """Every part the modem accepted is in the network's log once; nothing else is.

    Only a part whose outcome is unknown (no answer after its PDU) may be in the log or not.
    """
    accepted = [
        (to, part.reference)
        for to, _, outcome in outcomes
        for part in outcome.parts
        if part.error is None
    ]
    unknown = sum(
        1
        for _, _, outcome in outcomes
        for part in outcome.parts
        if part.error is not None and part.error.startswith("outcome unknown")
    )
    logged = [(part.to, part.mr) for part in log]
    assert len(accepted) <= len(logged) <= len(accepted) + unknown
    for item in accepted:
        assert item in logged
    # The texts the network saw are the texts we were asked to send.
    asked = {(to, text) for to, text, _ in outcomes}
    messages: dict[tuple[str, int], list[SentPart]] = {}
    for index, part in enumerate(log):
        key = (part.to, part.reference if part.reference is not None else -index)
        messages.setdefault(key, []).append(part)
    for parts in messages.values():
        if len(parts) == parts[0].total:
            text = "".join(p.text for p in sorted(parts, key=lambda p: p.sequence))
            assert (parts[0].to, text) in asked


async def send(rig: Rig, outcomes: list[tuple[str, str, SendOutcome]], to: str, text: str) -> None:
    outcome = await rig.modem.send(to, text, status_report=True)
    outcomes.append((to, text, outcome))


# --- the happy path ----------------------------------------------------------------------


async def test_identity_and_state() -> None:
    async with rig() as r:
        await r.ready()
        info = r.modem.info
        sim = r.sim.modem(PORT).sim
        assert info.status is ModemStatus.UP
        assert info.imsi == sim.imsi
        assert info.iccid == sim.iccid
        assert info.imei == r.sim.modem(PORT).imei
        assert info.operator == "SIMNET"
        assert info.registration == "home"
        assert info.signal is not None
        assert info.smsc == "+15550000000"
        assert r.states[-1].status is ModemStatus.UP


async def test_send_receive_and_reports() -> None:
    async with rig() as r:
        await r.ready()
        outcomes: list[tuple[str, str, SendOutcome]] = []
        texts = ["hello", "ж" * 100, "long " * 60]  # 1, 2 (UCS-2) and 2 parts
        for text in texts:
            await send(r, outcomes, OUTSIDE, text)
        assert all(outcome.ok for _, _, outcome in outcomes)
        check_sent_log(outcomes, r.sent())
        assert len(r.sent()) == 1 + 2 + 2

        await r.sim.inject("hi there", sender="+4930123456", to_port=PORT)
        await r.sim.inject("part " * 80, sender="+4930123456", to_port=PORT)
        await r.until(lambda: len(r.inbound) == 1 + 3)
        await r.until(lambda: len(r.reports) == 5)
        await r.until(lambda: r.stored == 0)  # everything read was deleted

        check_reports(outcomes, r.reports)


def check_reports(
    outcomes: list[tuple[str, str, SendOutcome]], reports: list[StatusReport]
) -> None:
    """One `delivered` report per part sent, by TP-MR and recipient (matching them to
    messages is the ledger's: tests/unit/test_ledger.py)."""
    sent = Counter((p.reference, to) for to, _, o in outcomes for p in o.parts)
    reported = Counter((r.message_reference, r.recipient) for r in reports)
    assert reported == sent
    assert {r.state for r in reports} == {ReportState.DELIVERED}


async def test_send_to_itself() -> None:
    async with rig() as r:
        await r.ready()
        own = r.sim.modem(PORT).sim.msisdn
        outcome = await r.modem.send(own, "loop", status_report=False)
        assert outcome.ok
        await r.until(lambda: [m.text for m in r.inbound] == ["loop"])


@pytest.mark.parametrize("profile", ["standard", "noprompt-space", "huawei", "wavecom"])
async def test_quirk_profiles(profile: str) -> None:
    async with rig(sim_config(profile=profile)) as r:
        await r.ready()
        assert r.modem.info.iccid == r.sim.modem(PORT).sim.iccid
        outcomes: list[tuple[str, str, SendOutcome]] = []
        await send(r, outcomes, OUTSIDE, "quirky")
        await send(r, outcomes, OUTSIDE, "quirky " * 30)
        assert all(o.ok for _, _, o in outcomes)
        check_sent_log(outcomes, r.sent())
        await r.sim.inject("back", sender="+4930123456", to_port=PORT)
        await r.until(lambda: [m.text for m in r.inbound] == ["back"])
        await r.until(lambda: len(r.reports) == 3)


async def test_tcp_transport() -> None:
    async with rig(sim_config(transport="tcp")) as r:
        assert r.sim.devices[PORT].startswith("socket://")
        await r.ready()
        outcome = await r.modem.send(OUTSIDE, "over tcp", status_report=False)
        assert outcome.ok
        await r.sim.inject("tcp in", sender="+4930123456", to_port=PORT)
        await r.until(lambda: len(r.inbound) == 1)


async def test_sim_pin() -> None:
    async with rig(sim_config(pin="4321"), port={"pin": "4321"}) as r:
        await r.ready()


async def test_sim_pin_missing_is_reported_not_guessed() -> None:
    async with rig(sim_config(pin="4321")) as r:
        await r.until(lambda: r.modem.info.last_error == "SIM PIN required and none is configured")
        assert not r.modem.ready
        assert r.sim.modem(PORT).sim_state() == "SIM PIN"  # no attempt was burnt


async def test_ussd() -> None:
    async with rig(sim_config(ussd={"*100#": "Balance 5.00"})) as r:
        await r.ready()
        assert await r.modem.ussd("*100#", 5.0) == "Balance 5.00"


async def test_messages_waiting_at_start_are_swept() -> None:
    async def early(sim: Simulator) -> None:
        # Stored while nobody listened: their +CMTI went nowhere, only a sweep finds them.
        for index in range(3):
            await sim.inject(f"early {index}", sender="+4930123456", to_port=PORT)

    async with rig(before=early) as r:
        await r.ready()
        await r.until(lambda: len(r.inbound) == 3)
        await r.until(lambda: r.stored == 0)
        assert sorted(m.text for m in r.inbound) == ["early 0", "early 1", "early 2"]


async def test_a_message_mode_the_firmware_dropped_is_set_again() -> None:
    """Never trust a setting survives: a modem back in text mode without a RDY is noticed
    on the next poll and put back into PDU mode before a send would go wrong."""
    async with rig() as r:
        await r.ready()
        r.sim.modem(PORT).text_mode = True  # the firmware forgot AT+CMGF=0 on its own
        await r.modem.startup.poll()
        assert r.sim.modem(PORT).text_mode is False
        outcome = await r.modem.send(OUTSIDE, "still PDU", status_report=False)
        assert outcome.ok
        assert [p.text for p in r.sent()] == ["still PDU"]


async def test_direct_reports_the_modem_stopped_routing_are_routed_again() -> None:
    """A +CDS acknowledged too late makes the modem switch routing to us off; the next
    poll notices it and routes reports again, so the SMSC's retry reaches us."""
    async with rig(sim_config(smsc_retry=0.2), port={"report_routing": "direct"}) as r:
        await r.ready()
        virtual = r.sim.modem(PORT)
        assert (virtual.csms, virtual.cnmi[3]) == (1, 1)
        virtual.cnmi[1] = virtual.cnmi[3] = 0  # what a +CDS left unacknowledged does
        await r.modem.startup.poll()
        assert virtual.cnmi[3] == 1
        outcome = await r.modem.send(OUTSIDE, "reported directly", status_report=True)
        await r.until(lambda: len(r.reports) == 1)
        await r.until(lambda: virtual.stats.acknowledged == 1)
        assert [p.reference for p in outcome.parts] == [r.reports[0].message_reference]
