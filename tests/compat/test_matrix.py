"""Every modem profile x every core function, through the real agent over real ptys.

No profile-specific setting anywhere: the agent gets the same configuration for every port.
`tests/compat/matrix.py` turns a run into the README's compatibility table.
"""

from __future__ import annotations

import uuid

import pytest
from smsgate import contracts

from tests.compat.farm import PROFILE_NAMES, Check, CompatFarm, ussd
from tests.integration.farm import job, publish_jobs, until

OUTSIDE = "+4915112345678"
SENDER = "+4930123456"
LONG_GSM7 = "A long GSM-7 message with [brackets], €uro and ü, sent in parts. " * 6
LONG_UCS2 = "Привет, мир 👋 — a long UCS-2 message with an emoji 🎉 in every part. " * 3
LONG_INBOUND = "An inbound message long enough for three parts; they arrive out of order. " * 5


def ready_now(farm: CompatFarm, port: str) -> bool:
    state = farm.state(port)
    return state is not None and state.status in (
        contracts.PortStatus.READY,
        contracts.PortStatus.BUSY,
    )


async def send(farm: CompatFarm, port: str, text: str, *, report: bool = False) -> str:
    """Send `text` out of `port`; check the network got exactly it. Returns the message id."""
    queued = job(OUTSIDE, text, port=port, status_report=report)
    await publish_jobs(farm.nc, [queued])
    await until(lambda: queued.id in farm.tap.results, f"{port}: the send result")
    [result] = farm.tap.results[queued.id]
    assert result.status is contracts.SendStatus.SENT, f"{port}: {result.reason}"
    by_mr = {part.mr: part for part in farm.sim.sent(port)}
    parts = [by_mr[p.reference] for p in result.parts if p.reference in by_mr]
    assert len(parts) == len(result.parts), f"{port}: TP-MRs {result.parts} not in the sent log"
    parts.sort(key=lambda p: p.sequence)
    assert "".join(p.text for p in parts) == text
    assert all(p.total == len(parts) for p in parts)
    return queued.id


async def receive(farm: CompatFarm, port: str, text: str, **options: object) -> None:
    await farm.sim.inject(text, sender=SENDER, to_port=port, **options)  # type: ignore[arg-type]
    await until(
        lambda: any(m.port == port and m.text == text and m.complete for m in farm.tap.inbound),
        f"{port}: inbound {text[:20]!r}",
    )


async def send_short(farm: CompatFarm, port: str) -> None:
    await send(farm, port, f"short from {port}")


async def send_long_gsm7(farm: CompatFarm, port: str) -> None:
    await send(farm, port, f"{port}: {LONG_GSM7}")


async def send_long_ucs2_emoji(farm: CompatFarm, port: str) -> None:
    await send(farm, port, f"{port}: {LONG_UCS2}")


async def receive_single(farm: CompatFarm, port: str) -> None:
    await receive(farm, port, f"hello {port} {uuid.uuid4().hex[:6]}")


async def receive_concatenated(farm: CompatFarm, port: str) -> None:
    await receive(farm, port, f"{port}: {LONG_INBOUND}", order="reverse")


async def delivery_report(farm: CompatFarm, port: str) -> None:
    message = await send(farm, port, f"report me, {port}", report=True)
    await until(lambda: any(r.id == message for r in farm.tap.reports), f"{port}: the report")
    [report] = [r for r in farm.tap.reports if r.id == message]
    assert report.state is contracts.DeliveryState.DELIVERED, report.reason


async def ussd_balance(farm: CompatFarm, port: str) -> None:
    answer = await ussd(farm, port, "*100#", timeout=10)
    assert answer.ok, f"{port}: {answer.error}"
    assert "balance is 12.50" in (answer.text or ""), answer.text


async def identity(farm: CompatFarm, port: str) -> None:
    state = farm.state(port)
    modem = farm.sim.modem(port)
    assert state is not None
    assert (state.imei, state.iccid, state.imsi) == (modem.imei, modem.sim.iccid, modem.sim.imsi)
    assert state.sms_mode == ("pdu" if modem.profile.pdu_mode else "text")


async def recovery_after_hang(farm: CompatFarm, port: str) -> None:
    farm.sim.set_fault(port, hung=True)
    try:
        answer = await ussd(farm, port, "*100#", timeout=3)  # a command meets the hang
        assert not answer.ok
        await until(lambda: not ready_now(farm, port), f"{port}: taken out of service")
    finally:
        farm.sim.set_fault(port, hung=False)
    await until(lambda: ready_now(farm, port), f"{port}: back in service", 60)
    await send(farm, port, f"after the hang, {port}")


# The columns of the matrix, in the order they run; recovery goes last (it hangs modems).
CHECKS: dict[str, Check] = {
    "identity": identity,
    "send_short": send_short,
    "send_long_gsm7": send_long_gsm7,
    "send_long_ucs2_emoji": send_long_ucs2_emoji,
    "receive_single": receive_single,
    "receive_concatenated": receive_concatenated,
    "delivery_report": delivery_report,
    "ussd": ussd_balance,
    "recovery_after_hang": recovery_after_hang,
}


@pytest.mark.parametrize(
    ("check", "profile"), [(check, profile) for check in CHECKS for profile in PROFILE_NAMES]
)
async def test_compat(farm: CompatFarm, check: str, profile: str) -> None:
    await farm.outcome(check, CHECKS[check], profile)
