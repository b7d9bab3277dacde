"""A long run on one virtual modem: 1,000 sends and 1,000 receives through URC noise."""

from __future__ import annotations

import asyncio

from smsgate_agent.sending import SendOutcome

from tests.integration.test_modem_sim import (
    OUTSIDE,
    PORT,
    check_reports,
    check_sent_log,
    rig,
    sim_config,
)

COUNT = 1000


async def test_thousand_sends_and_receives_account_for_every_part() -> None:
    config = sim_config(
        part_time=0.0,
        delivery_delay=0.0,
        report_delay=0.0,
        urc_rate=0.2,
        storage_size=50,
        sent_log=10 * COUNT,
    )
    async with rig(config, limit=240.0) as r:
        await r.ready()
        outcomes: list[tuple[str, str, SendOutcome]] = []

        async def sender() -> None:
            for index in range(COUNT):
                # Every tenth message is long enough for two parts.
                text = f"msg {index:04d} " + ("y" * 160 if index % 10 == 0 else "")
                outcome = await r.modem.send(OUTSIDE, text, status_report=True)
                outcomes.append((OUTSIDE, text, outcome))

        async def injector() -> None:
            for index in range(COUNT):
                await r.sim.inject(f"in {index:04d}", sender="+4930123456", to_port=PORT)
                await asyncio.sleep(0)  # interleave with the sends

        await asyncio.gather(sender(), injector())

        assert all(o.ok for _, _, o in outcomes), [o.error for _, _, o in outcomes if not o.ok]
        parts = sum(len(o.parts) for _, _, o in outcomes)
        assert parts == COUNT + COUNT // 10
        check_sent_log(outcomes, r.sent())
        assert len(r.sent()) == parts

        await r.until(lambda: len(r.inbound) >= COUNT)
        await r.until(lambda: len(r.reports) >= parts)
        await r.until(lambda: r.stored == 0)
        assert sorted(m.text for m in r.inbound) == [f"in {i:04d}" for i in range(COUNT)]
        assert r.sim.network.held(r.sim.modem(PORT)) == 0

        check_reports(outcomes, r.reports)
