"""The history through the API, on SQLite and PostgreSQL: messages sent through the API
and answered by an agent stand-in, inbound SMS on the bus, folded in by a running history
store; searched, paged, exported and read back with their timelines."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import inspect
import io
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError
from smsgate import bus, contracts, subjects
from smsgate.config import Config, HistoryConfig
from smsgate.contracts import InboundSms
from smsgate_history.service import HistoryStore

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    ADMIN_TOKEN,
    LIMITED_TOKEN,
    TOKEN,
    AgentStandIn,
    Api,
    api_config,
    decode_json,
    port_state,
    running_agent,
    running_api,
)

BEARER = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMITED = {"Authorization": f"Bearer {LIMITED_TOKEN}"}


@contextlib.asynccontextmanager
async def history_store(
    config: Config, nats: Bus, *, rebuild: bool = False
) -> AsyncIterator[HistoryStore]:
    store = HistoryStore(config)
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(nats.nc, stop, rebuild=rebuild))
    try:
        yield store
    finally:
        stop.set()
        await task
        await store.close()


def config_for(nats: Bus, url: str) -> Config:
    return api_config(nats.config, history=HistoryConfig(url=url))


@pytest.fixture
async def setup(nats_bus: Bus, history_url: str) -> AsyncIterator[tuple[Api, AgentStandIn, Config]]:
    config = config_for(nats_bus, history_url)
    async with running_api(nats_bus, config) as api, running_agent(nats_bus) as agent:
        await api.set_ports(port_state("lte-1"), port_state("lte-2"))
        yield api, agent, config


async def until(check: Callable[[], object], what: str) -> None:
    for _ in range(400):
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def listing(
    api: Api, query: str = "", headers: dict[str, str] = ADMIN
) -> list[dict[str, object]]:
    response = await api.client.get(f"/api/v1/messages{query}", headers=headers)
    assert response.status_code == 200, response.text
    return decode_json(response.content)["messages"]  # type: ignore[no-any-return]


async def send(api: Api, to: list[str], text: str, headers: dict[str, str] = BEARER) -> list[str]:
    response = await api.client.post(
        "/api/v1/messages", json={"to": to, "text": text}, headers=headers
    )
    assert response.status_code == 202, response.text
    return [m["id"] for m in decode_json(response.content)["messages"]]


async def settled(api: Api, count: int, state: str = "sent") -> None:
    async def check() -> bool:
        return sum(m["state"] == state for m in await listing(api)) >= count

    await until(check, f"{count} messages {state} in the history")


async def inbound(nats: Bus, message_id: str, sender: str, text: str, port: str = "lte-1") -> None:
    now = contracts.utcnow()
    event = InboundSms(
        event_id=f"{message_id}:in",
        port=port,
        port_number=subjects.port_number(port),
        imsi="460004372167365",
        time=now,
        id=message_id,
        sender=sender,
        text=text,
        smsc_time=now,
    )
    await nats.js.publish(subjects.event("inbound", port), contracts.encode(event))


async def test_a_sent_message_reads_back_with_its_text_and_timeline(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        ids = await send(api, ["+15550001", "+15550002"], "Invoice 42 is due")
        await settled(api, 2)
        response = await api.client.get(f"/api/v1/messages/{ids[0]}", headers=BEARER)
    assert response.status_code == 200
    found = decode_json(response.content)
    # The status fields as before...
    assert (found["id"], found["to"], found["state"], found["port"], found["user"]) == (
        ids[0],
        "+15550001",
        "sent",
        "lte-1",
        "smsuser",
    )
    assert found["parts"] == [{"sequence": 1, "reference": 7, "error": None}]
    # ...and the history's.
    assert found["text"] == "Invoice 42 is due"
    assert [(s["step"], s.get("part"), s.get("reference")) for s in found["timeline"]] == [
        ("queued", None, None),
        ("sent", 1, 7),
    ]


async def test_search_filters_pages_and_the_inbox(setup: tuple[Api, AgentStandIn, Config]) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        await send(api, ["+15550001"], "hello one")
        await send(api, ["+15550002"], "hello two")
        await send(api, ["+15550003"], "something else")
        await inbound(api.bus, "in-1", "+1 555 0001", "a reply")
        await settled(api, 3)
        await until(lambda: listing(api, "?direction=in"), "the inbound message")

        by_number = await listing(api, "?number=15550001")
        assert sorted((m["direction"], m["text"]) for m in by_number) == [
            ("in", "a reply"),
            ("out", "hello one"),
        ]
        assert [m["text"] for m in await listing(api, "?q=HELLO&direction=out")] == [
            "hello two",
            "hello one",
        ]
        assert len(await listing(api, "?state=sent&port=lte-1")) == 3

        inbox = await api.client.get("/api/v1/inbox", headers=ADMIN)
        assert [m["id"] for m in decode_json(inbox.content)["messages"]] == ["in-1"]

        first = decode_json(
            (await api.client.get("/api/v1/messages?limit=2", headers=ADMIN)).content
        )
        assert len(first["messages"]) == 2
        assert first["next"]
        rest = await listing(api, f"?limit=2&cursor={first['next']}")
        seen = [m["id"] for m in first["messages"]] + [m["id"] for m in rest]
        assert len(seen) == len(set(seen)) == 4


async def test_users_see_their_own_messages_admins_see_all(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        [mine] = await send(api, ["+15550001"], "from smsuser")
        [theirs] = await send(api, ["+15550002"], "from limited", headers=LIMITED)
        await inbound(api.bus, "in-1", "+15559999", "to lte-1", port="lte-1")
        await inbound(api.bus, "in-9", "+15559999", "to lte-9", port="lte-9")
        await settled(api, 2)
        await until(lambda: _count(api, "?direction=in", 2), "both inbound")

        assert {m["id"] for m in await listing(api)} == {mine, theirs, "in-1", "in-9"}
        assert {m["id"] for m in await listing(api, headers=BEARER)} == {mine, "in-1", "in-9"}
        # `limited` may use lte-1 and lte-2: the inbound of lte-9 is not theirs.
        assert {m["id"] for m in await listing(api, headers=LIMITED)} == {theirs, "in-1"}
        other = await api.client.get(f"/api/v1/messages/{theirs}", headers=BEARER)
        assert other.status_code == 404
        own = await api.client.get(f"/api/v1/messages/{theirs}", headers=LIMITED)
        assert own.status_code == 200


async def _count(api: Api, query: str, count: int) -> bool:
    return len(await listing(api, query)) >= count


async def test_csv_and_json_lines_exports_carry_every_match(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        sent = await send(
            api, [f"+1555000{i}" for i in range(5)], 'a "quoted", text\nwith a newline'
        )
        await settled(api, 5)
        response = await api.client.get("/api/v1/messages?format=csv&direction=out", headers=BEARER)
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert sorted(r["id"] for r in rows) == sorted(sent)
        assert {r["text"] for r in rows} == {'a "quoted", text\nwith a newline'}
        lines = await api.client.get("/api/v1/messages?format=jsonl", headers=BEARER)
        assert lines.headers["content-type"].startswith("application/x-ndjson")
        decoded = [msgspec.json.decode(line) for line in lines.content.splitlines()]
        assert sorted(d["id"] for d in decoded) == sorted(sent)


async def test_times_are_taken_in_every_usual_form(setup: tuple[Api, AgentStandIn, Config]) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        await send(api, ["+15550001"], "now")
        await settled(api, 1)
    for since, count in [
        ("2000-01-01", 1),
        ("2000-01-01 12:00:00", 1),
        ("2000-01-01T12:00:00Z", 1),
        ("2000-01-01T12:00:00 02:00", 1),  # the `+` of the offset, decoded as a space
        ("946684800", 1),
        ("2999-01-01T00:00:00%2B02:00", 0),
    ]:
        assert len(await listing(api, f"?since={since}")) == count, since


async def test_bad_filters_are_refused_by_name(setup: tuple[Api, AgentStandIn, Config]) -> None:
    api, _agent, _config = setup
    for query, word in [
        ("?since=yesterday", "since"),
        ("?direction=up", "direction"),
        ("?limit=5000", "limit"),
        ("?cursor=zzz", "cursor"),
        ("?format=xml", "format"),
        ("?limit=ten", "limit"),
    ]:
        response = await api.client.get(f"/api/v1/messages{query}", headers=BEARER)
        assert response.status_code == 400, query
        assert word in decode_json(response.content)["message"]


async def test_the_store_catches_up_after_downtime_and_rebuilds_from_the_stream(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    api, _agent, config = setup
    async with history_store(config, api.bus):
        await send(api, ["+15550001"], "while up")
        await settled(api, 1)
    # The store is down: messages go on being sent.
    await send(api, ["+15550002", "+15550003"], "while down")
    await inbound(api.bus, "in-1", "+15559999", "while down")
    async with history_store(config, api.bus):
        await settled(api, 3)
        await until(lambda: _count(api, "?direction=in", 1), "the inbound sent while down")
    before = await listing(api)
    async with history_store(config, api.bus, rebuild=True) as store:
        # 3 queued records, 3 results, 1 inbound: everything the stream holds, once more.
        await until(lambda: store.applied == 7, "the rebuilt history")
    after = await listing(api)
    assert [(m["id"], m["state"], m["text"]) for m in after] == [
        (m["id"], m["state"], m["text"]) for m in before
    ]


async def test_a_refused_request_leaves_nothing_in_the_history(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    api, agent, config = setup
    await agent.stop()
    await bus.provision(api.bus.js, msgspec.structs.replace(api.bus.config, send_max_msgs=1))
    # Room for one job, two recipients: the request is refused, its records withdrawn.
    response = await api.client.post(
        "/api/v1/messages", json={"to": ["10086", "10087"], "text": "refused"}, headers=BEARER
    )
    assert response.status_code == 503
    response = await api.client.post(
        "/api/v1/messages", json={"to": ["10088"], "text": "accepted"}, headers=BEARER
    )
    assert response.status_code == 202
    # One journal message per request here (they came one after the other), and the
    # withdrawal between them.
    info = await api.bus.js.stream_info(
        subjects.EVENTS_STREAM, subjects_filter="sms.event.journal.>"
    )
    assert info.state.subjects == {
        subjects.JOURNAL_QUEUED: 2,
        subjects.JOURNAL_WITHDRAWN: 1,
    }
    async with history_store(config, api.bus):
        await until(lambda: _count(api, "", 1), "the accepted message in the history")
        # The withdrawal was published before the accepted request: it is folded in too.
        assert [(m["number"], m["text"]) for m in await listing(api)] == [("10088", "accepted")]


async def test_with_the_history_off_nothing_is_journaled(nats_bus: Bus, tmp_path: object) -> None:
    config = api_config(nats_bus.config, history=HistoryConfig(enabled=False))
    async with running_api(nats_bus, config) as api:
        await api.set_ports(port_state("lte-1"))
        response = await api.client.post(
            "/api/v1/messages", json={"to": ["10086"], "text": "hi"}, headers=BEARER
        )
        assert response.status_code == 202
        info = await nats_bus.js.stream_info(subjects.EVENTS_STREAM)
        assert info.state.messages == 0
        listed = await api.client.get("/api/v1/messages", headers=BEARER)
        assert listed.status_code == 404
        # The live status still answers.
        [sent] = decode_json(response.content)["messages"]
        assert (
            await api.client.get(f"/api/v1/messages/{sent['id']}", headers=BEARER)
        ).status_code == 200


async def test_a_message_only_the_history_knows_is_still_found(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    # An inbound SMS has no status in `sms_messages`; neither has a sent message whose
    # status expired there: the history answers alone.
    api, _agent, config = setup
    async with history_store(config, api.bus):
        await inbound(api.bus, "in-1", "+15559999", "only in the history")
        await until(lambda: _count(api, "?direction=in", 1), "the inbound message")
    response = await api.client.get("/api/v1/messages/in-1", headers=ADMIN)
    assert response.status_code == 200
    found = decode_json(response.content)
    assert (found["direction"], found["sender"], found["to"], found["state"], found["text"]) == (
        "in",
        "+15559999",
        "lte-1",
        "received",
        "only in the history",
    )
    assert [s["step"] for s in found["timeline"]] == ["received"]


async def test_a_caller_id_is_refused_after_its_status_left_the_bus(
    setup: tuple[Api, AgentStandIn, Config],
) -> None:
    """`sms_messages` keeps a status for `nats.messages_ttl` only (an hour by default):
    a caller's id sent again after that is still a repeat, known to the history store,
    and never a second job."""
    api, agent, config = setup
    body = {"to": ["+15550001"], "text": "pay invoice 7", "id": "pay-7"}
    async with history_store(config, api.bus):
        first = await api.client.post("/api/v1/messages", json=body, headers=BEARER)
        assert first.status_code == 202, first.text
        await settled(api, 1)
        handed_out = len(agent.handled)
        # Its status expires, as the bucket's TTL does it: nothing left under the key
        # (and past SMS_SEND's duplicate window, JetStream would take the job again).
        await api.bus.js.purge_stream(
            f"KV_{subjects.MESSAGES_BUCKET}", subject=subjects.MESSAGES_KV_PREFIX + "pay-7"
        )
        again = await api.client.post("/api/v1/messages", json=body, headers=BEARER)
        other = await api.client.post(
            "/api/v1/messages", json=body | {"text": "pay invoice 8"}, headers=BEARER
        )
    assert again.status_code == 202, again.text
    [message] = decode_json(again.content)["messages"]
    assert (message["id"], message["repeat"], message["state"]) == ("pay-7", True, "sent")
    assert other.status_code == 409  # the same id for another text: refused, as before
    assert len(agent.handled) == handed_out  # no second job
    with pytest.raises(KeyNotFoundError):  # no `queued` status left behind
        await api.bus.buckets.messages.get("pay-7")
