"""The agent's send claims on a real nats-server: a dropped claim leaves a marker that
expires, and the key behaves as before for the next claim."""

from __future__ import annotations

import time

import pytest
from nats.js.errors import APIError, KeyNotFoundError
from smsgate import bus, subjects
from smsgate_agent.liveness import Claim
from smsgate_agent.publisher import Publisher

from tests.conftest import Bus


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
