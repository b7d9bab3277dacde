"""The whole chain with no mocks: HTTP /sendsms -> JetStream -> agent -> virtual modem over a
real pty (AT+CMGS in PDU mode) -> send result -> callback service -> a local HTTP receiver.

It is the gateway's own demo: `ye` to the carrier's 10086, who answers with a long balance
message. One send yields the three callbacks the gateway documents.
"""

from __future__ import annotations

import urllib.parse

import httpx
from smsgate_sim.network import CARRIER_BALANCE_REPLY
from smsgate_sim.simulator import Simulator

from tests.e2e.conftest import PASSWORD, USER
from tests.integration.callback_fixtures import Receiver, until


def callbacks(receiver: Receiver) -> list[dict[str, str]]:
    return [
        dict(urllib.parse.parse_qsl(h.query.decode(), keep_blank_values=True))
        for h in receiver.hits
    ]


async def test_gateway_demo_end_to_end(farm: tuple[str, Receiver, Simulator]) -> None:
    api, receiver, sim = farm
    query = urllib.parse.urlencode(
        {
            "username": USER,
            "password": PASSWORD,
            "phonenumber": "10086",
            "timeout": "30",
            "id": "edeb7540",
            "message": "ye",
        }
    )
    async with httpx.AsyncClient(timeout=40) as client:
        response = await client.get(f"{api}/sendsms?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    record = body["report"]["0"]
    assert record["result"] == "sent"
    assert record["phonenumber"] == "10086"
    assert record["id"] == "edeb7540"
    assert record["port"] in {"1", "2"}

    # The modem really got one PDU for 10086 over its pty.
    [part] = sim.sent()
    assert part.to.endswith("10086")

    await until(lambda: len(receiver.hits) >= 3, "three callbacks: result, inbound, report", 30)
    by_type = {c["type"]: c for c in callbacks(receiver)}
    result = by_type["SMS-Status-Result"]
    assert result["status"] == "Sent"
    assert result["id"] == "edeb7540"
    assert result["num"] == "10086"
    report = by_type["SMS-Status-Report"]
    assert report["status"] == "Message received on handset"
    assert report["id"] == "edeb7540"
    inbound = by_type[""]
    assert inbound["num"] == "10086"
    assert inbound["message"] == CARRIER_BALANCE_REPLY  # multipart, joined
    assert inbound["port"] == record["port"]
