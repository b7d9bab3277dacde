"""A repeated id against the whole farm: a true repeat answers, another message is refused."""

from __future__ import annotations

import httpx
from smsgate_sim.simulator import Simulator

from tests.e2e.conftest import PASSWORD, USER
from tests.integration.callback_fixtures import Receiver


async def test_a_sent_id_repeated_with_another_text_is_refused(
    farm: tuple[str, Receiver, Simulator],
) -> None:
    api, _, sim = farm
    query = {"username": USER, "password": PASSWORD, "phonenumber": "10070", "id": "t9-sent"}
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        first = await http.get("/sendsms", params={**query, "message": "first", "timeout": "30"})
        assert first.json()["report"]["0"]["result"] == "sent", first.text
        # The agent wrote the final status: it still tells the text apart.
        other = await http.get("/sendsms", params={**query, "message": "different"})
        assert other.status_code == 409, other.text
        assert "another text" in other.json()["error"]
        again = await http.get("/sendsms", params={**query, "message": "first"})
        assert (again.status_code, again.json()["report"]["0"]["result"]) == (200, "sent")
    assert [p.text for p in sim.sent()] == ["first"]
