"""Every fault the simulator can inject: the modem recovers, and no send is lost or doubled."""

from __future__ import annotations

import asyncio

import pytest
from smsgate_agent.link import ModemStatus
from smsgate_agent.sending import SendOutcome

from tests.integration.test_modem_sim import OUTSIDE, PORT, Rig, check_sent_log, rig, sim_config

SENDER = "+4930123456"


async def exchange(r: Rig, count: int) -> list[tuple[str, str, SendOutcome]]:
    """`count` sends and `count` receives, interleaved; returns the send outcomes."""
    outcomes: list[tuple[str, str, SendOutcome]] = []
    for index in range(count):
        text = f"out {index} " + "x" * (index % 3) * 70
        outcomes.append((OUTSIDE, text, await r.modem.send(OUTSIDE, text, status_report=True)))
        await r.sim.inject(f"in {index}", sender=SENDER, to_port=PORT)
    return outcomes


# --- send errors -------------------------------------------------------------------------


async def test_temporary_send_error_is_retried_once_sent() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, send_error=38, send_error_count=2)
        outcome = await r.modem.send(OUTSIDE, "retry me", status_report=False)
        assert outcome.ok
        assert len(r.sent()) == 1
        assert r.sim.modem(PORT).stats.pdus_received == 3


async def test_permanent_send_error_fails_without_retry() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, send_error=21, send_error_count=5)
        outcome = await r.modem.send(OUTSIDE, "refused", status_report=False)
        assert not outcome.ok
        assert not outcome.temporary
        assert outcome.code == 21
        assert r.sent() == []
        assert r.sim.modem(PORT).stats.pdus_received == 1


async def test_unknown_send_error_gets_bounded_retries() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, send_error=500, send_error_count=10)
        outcome = await r.modem.send(OUTSIDE, "unclear", status_report=False)
        assert not outcome.ok
        assert outcome.temporary  # another port may do better
        assert outcome.code == 500
        assert r.sent() == []
        assert r.sim.modem(PORT).stats.pdus_received == r.modem.timings.ambiguous_retries + 1


async def test_error_on_second_part_reports_the_first() -> None:
    async with rig() as r:
        await r.ready()
        outcomes: list[tuple[str, str, SendOutcome]] = []

        async def break_after_first(sequence: int) -> None:
            if sequence == 2:
                r.sim.set_fault(PORT, send_error=21, send_error_count=1)

        text = "two parts " * 20
        outcome = await r.modem.send(OUTSIDE, text, status_report=False, on_part=break_after_first)
        outcomes.append((OUTSIDE, text, outcome))
        assert not outcome.ok
        assert not outcome.temporary  # part 1 is out: a retry elsewhere would repeat it
        assert outcome.parts[0].reference is not None
        assert outcome.parts[1].error is not None
        assert len(r.sent()) == 1
        check_sent_log(outcomes, r.sent())


# --- a modem that stops answering ---------------------------------------------------------


async def test_hung_modem_is_noticed_and_recovers() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, hung=True)
        await r.until(lambda: r.modem.info.status is not ModemStatus.UP)
        refused = await r.modem.send(OUTSIDE, "while hung", status_report=False)
        assert not refused.ok
        assert refused.temporary
        await r.until(lambda: r.modem.info.status is ModemStatus.DOWN)
        r.sim.clear_faults(PORT)
        await r.ready()
        assert (await r.modem.send(OUTSIDE, "after", status_report=False)).ok
        assert [p.text for p in r.sent()] == ["after"]


async def test_hang_during_send_is_unknown_and_not_repeated() -> None:
    async with rig(sim_config(part_time=0.3)) as r:
        await r.ready()
        sending = asyncio.create_task(r.modem.send(OUTSIDE, "in flight", status_report=False))
        await r.until(lambda: r.sim.modem(PORT).stats.pdus_received == 1)
        r.sim.set_fault(PORT, hung=True)
        outcome = await sending
        assert not outcome.ok
        assert not outcome.temporary  # the network may have it: never send it again
        assert "unknown" in (outcome.error or "")
        r.sim.clear_faults(PORT)
        await r.ready()
        assert r.sim.modem(PORT).stats.pdus_received == 1
        assert r.sent() == []


async def test_power_cycle_reinitialises() -> None:
    async with rig() as r:
        await r.ready()
        commands = r.sim.modem(PORT).stats.commands
        await r.sim.reset(PORT)  # settings back to defaults, then RDY
        await r.until(lambda: r.sim.modem(PORT).stats.commands > commands + 10)
        await r.until(lambda: r.sim.modem(PORT).cnmi[3] == 2 and r.modem.ready)
        assert (await r.modem.send(OUTSIDE, "after reset", status_report=False)).ok


async def test_reset_that_drops_the_device() -> None:
    async with rig(sim_config(reset_unplugs=True)) as r:
        await r.ready()
        await r.sim.reset(PORT)
        await r.until(lambda: r.modem.info.status is not ModemStatus.UP)
        await r.ready()
        assert (await r.modem.send(OUTSIDE, "back", status_report=False)).ok


# --- a modem that goes away ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_unplug_and_replug(transport: str) -> None:
    async with rig(sim_config(transport=transport)) as r:
        await r.ready()
        await r.sim.unplug(PORT)
        await r.until(lambda: r.modem.info.status is ModemStatus.DOWN)
        refused = await r.modem.send(OUTSIDE, "unplugged", status_report=False)
        assert refused.temporary
        await r.sim.inject("while away", sender=SENDER, to_port=PORT)  # the network holds it
        await r.sim.replug(PORT)
        await r.ready()
        assert (await r.modem.send(OUTSIDE, "replugged", status_report=False)).ok
        assert [p.text for p in r.sent()] == ["replugged"]
        await r.until(lambda: [m.text for m in r.inbound] == ["while away"])


async def test_unplug_during_send() -> None:
    async with rig(sim_config(part_time=0.3)) as r:
        await r.ready()
        sending = asyncio.create_task(r.modem.send(OUTSIDE, "cut off", status_report=False))
        await r.until(lambda: r.sim.modem(PORT).stats.pdus_received == 1)
        await r.sim.unplug(PORT)
        outcome = await sending
        assert not outcome.ok
        assert not outcome.temporary
        assert "unknown" in (outcome.error or "")
        await r.sim.replug(PORT)
        await r.ready()
        assert r.sent() == []


# --- a noisy line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noise",
    [{"garbage_rate": 0.3}, {"urc_rate": 0.5}, {"garbage_rate": 0.2, "urc_rate": 0.3}],
    ids=["garbage", "urcs", "both"],
)
async def test_noisy_line_loses_nothing(noise: dict[str, float]) -> None:
    async with rig(sim_config(**noise)) as r:
        await r.ready()
        outcomes = await exchange(r, 40)
        assert all(o.ok for _, _, o in outcomes), [o.error for _, _, o in outcomes if not o.ok]
        check_sent_log(outcomes, r.sent())
        await r.until(lambda: len(r.inbound) == 40)
        assert sorted(m.text for m in r.inbound) == sorted(f"in {i}" for i in range(40))
        parts = sum(len(o.parts) for _, _, o in outcomes)
        await r.until(lambda: len(r.reports) == parts)
        await r.until(lambda: r.stored == 0)


# --- SIM and network ----------------------------------------------------------------------


async def test_sim_busy_after_power_on() -> None:
    async with rig(sim_config(sim_ready_delay=0.5)) as r:
        await r.ready()
        assert any(s.status is ModemStatus.INITIALISING for s in r.states)


async def test_sim_not_ready_until_it_is() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, sim_not_ready=True)
        await r.sim.reset(PORT)
        await r.until(lambda: not r.modem.ready)
        await r.until(lambda: r.sim.modem(PORT).stats.commands > 0)
        r.sim.clear_faults(PORT)
        await r.ready()
        assert (await r.modem.send(OUTSIDE, "sim ready", status_report=False)).ok


async def test_deregistration() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, deregistered=True)
        await r.until(lambda: not r.modem.ready)
        assert r.modem.info.status is ModemStatus.UP
        assert r.modem.info.registration == "searching"
        refused = await r.modem.send(OUTSIDE, "no network", status_report=False)
        assert refused.temporary
        assert r.sim.modem(PORT).stats.pdus_received == 0
        r.sim.clear_faults(PORT)
        await r.ready()
        assert (await r.modem.send(OUTSIDE, "network", status_report=False)).ok


async def test_storage_full_holds_messages_at_the_network() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, storage_full=True)
        await r.sim.inject("waiting", sender=SENDER, to_port=PORT)
        assert r.sim.network.held(r.sim.modem(PORT)) == 1
        r.sim.clear_faults(PORT)
        await r.until(lambda: [m.text for m in r.inbound] == ["waiting"])
        await r.until(lambda: r.stored == 0)


async def test_inbound_kept_until_the_handler_succeeds() -> None:
    async with rig() as r:
        await r.ready()
        r.inbound_failures = 2
        await r.sim.inject("durable", sender=SENDER, to_port=PORT)
        await r.until(lambda: r.inbound_failures == 0)
        assert r.stored == 1  # not deleted: the handler never returned
        await r.until(lambda: [m.text for m in r.inbound] == ["durable"])  # a sweep finds it
        await r.until(lambda: r.stored == 0)


async def test_random_send_errors_account_for_every_part() -> None:
    async with rig(sim_config(send_error=42, send_error_rate=0.3)) as r:
        await r.ready()
        outcomes: list[tuple[str, str, SendOutcome]] = []
        for index in range(30):
            text = f"flaky {index} " + "z" * (index % 2) * 160
            outcomes.append((OUTSIDE, text, await r.modem.send(OUTSIDE, text, status_report=False)))
        check_sent_log(outcomes, r.sent())
        failed = [o for _, _, o in outcomes if not o.ok]
        assert all(o.code == 42 for o in failed)
        assert sum(o.ok for _, _, o in outcomes) >= 20  # three retries make most of them


async def test_signal_is_followed() -> None:
    async with rig() as r:
        await r.ready()
        r.sim.set_fault(PORT, signal=5)
        await r.until(lambda: r.modem.info.signal == -103)
        r.sim.set_fault(PORT, signal=99)
        await r.until(lambda: r.modem.info.signal is None)
        assert r.modem.ready  # a weak signal alone does not take the port out
