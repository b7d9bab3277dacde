"""`/sendsms` against a real nats-server: every parameter, report format and error path."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.contracts import PortStatus, SendJob, SendStatus
from smsgate.embedded import free_port
from smsgate_api import create_app

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    PASSWORD,
    AgentStandIn,
    Api,
    api_config,
    decode_json,
    port_state,
    running_agent,
    running_api,
)


@pytest.fixture(params=["asgi", "wire"])
async def api(nats_bus: Bus, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The endpoint through ASGI, and over HTTP through the lean protocol that serves it."""
    wire = request.param == "wire"
    async with running_api(nats_bus, api_config(nats_bus.config), wire=wire) as running:
        yield running


@pytest.fixture
async def agent(nats_bus: Bus) -> AsyncIterator[AgentStandIn]:
    async with running_agent(nats_bus) as stand_in:
        yield stand_in


TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
CREDS = f"username=smsuser&password={PASSWORD}"


async def send(api: Api, query: str) -> tuple[int, bytes]:
    response = await api.client.get(f"/sendsms?{query}")
    return response.status_code, response.content


# --- the captures, replayed exactly --------------------------------------------------------


async def test_documented_request_waits_for_the_result(api: Api, agent: AgentStandIn) -> None:
    response = await api.client.get(
        "/sendsms?username=smsuser&password=smspwd&phonenumber=10086"
        "&timeout=60&id=edeb7540&message=ye"
    )
    assert response.status_code == 200
    body = decode_json(response.content)
    assert list(body) == ["message", "report"]
    assert body["message"] == "ye"
    record = body["report"]["0"]
    assert list(record) == ["port", "phonenumber", "time", "id", "result"]
    assert record["port"] == "1"
    assert record["phonenumber"] == "10086"
    assert TIME.match(record["time"])
    assert record["id"] == "edeb7540"
    assert record["result"] == "sent"
    [job] = agent.handled
    assert job.id == "edeb7540"
    assert job.caller_id == "edeb7540"
    assert job.text == "ye"


async def test_captured_phonenumber_in_camel_case(api: Api, agent: AgentStandIn) -> None:
    status, body = await send(
        api,
        "username=smsuser&password=smspwd&phoneNumber=10086&timeout=60&id=39fd7439&message=ye",
    )
    assert status == 200
    record = decode_json(body)["report"]["0"]
    assert record["id"] == "39fd7439"
    assert record["result"] == "sent"
    assert record["phonenumber"] == "10086"


async def test_post_form(api: Api, agent: AgentStandIn) -> None:
    response = await api.client.post(
        "/sendsms",
        data={
            "username": "smsuser",
            "password": PASSWORD,
            "phonenumber": "10086",
            "message": "hello from a form",
            "timeout": "30",
            "id": "form1",
        },
    )
    assert response.status_code == 200
    body = decode_json(response.content)
    assert body["message"] == "hello from a form"
    assert body["report"]["0"]["result"] == "sent"


async def test_post_body_wins_over_query(api: Api) -> None:
    response = await api.client.post(
        f"/sendsms?{CREDS}&message=from-query&phonenumber=10086",
        content=b"message=from+body",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    [(_, job)] = await api.jobs()
    assert job.text == "from body"


@pytest.mark.parametrize("name", ["onenumber", "phonenummer", "PHONENUMBER"])
async def test_number_aliases(api: Api, name: str) -> None:
    status, body = await send(api, f"{CREDS}&{name}=10086&message=hi")
    assert status == 200
    assert decode_json(body)["report"]["0"]["phonenumber"] == "10086"


# --- timeout and results -------------------------------------------------------------------


async def test_timeout_zero_answers_at_once(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&timeout=0&id=t0")
    assert status == 200
    record = decode_json(body)["report"]["0"]
    assert record["result"] == "sending"
    assert record["port"] == ""  # any port: not chosen yet
    [(subject, job)] = await api.jobs()
    assert subject == subjects.SEND_ANY
    assert job.reply_to is None
    assert job.status_report
    assert job.user == "smsuser"
    status_entry = await api.bus.buckets.messages.get("t0")
    assert contracts.decode(status_entry.value or b"", contracts.MessageStatus).state == "queued"


async def test_still_pending_when_timeout_runs_out_is_sending(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&timeout=0.2")
    assert status == 200
    assert decode_json(body)["report"]["0"]["result"] == "sending"
    [(_, job)] = await api.jobs()
    assert job.reply_to is not None


async def test_results_per_recipient(api: Api, agent: AgentStandIn) -> None:
    agent.decide = lambda job: (
        (SendStatus.FAILED, "+CMS ERROR: 38") if job.to == "10087" else (SendStatus.SENT, None)
    )
    status, body = await send(
        api, f"{CREDS}&phonenumber=10086,10087&message=hi&timeout=30&id=batch"
    )
    assert status == 200
    report = decode_json(body)["report"]
    assert [report[k]["result"] for k in ("0", "1")] == ["sent", "fail"]
    assert [report[k]["id"] for k in ("0", "1")] == ["batch-0", "batch-1"]


async def test_an_outcome_nobody_knows_is_reported_unknown_never_fail(
    api: Api, agent: AgentStandIn
) -> None:
    """A send whose holder was lost, or whose modem hung after the PDU, may have reached
    the network: `result` says `unknown` in both report formats, and so does a repeat of
    the request, answered from the stored status."""
    agent.decide = lambda job: (SendStatus.UNKNOWN, "interrupted")
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&timeout=30&id=unk")
    assert status == 200
    assert decode_json(body)["report"]["0"]["result"] == "unknown"
    stored = await api.bus.buckets.messages.get("unk")
    assert contracts.decode(stored.value or b"", contracts.MessageStatus).state == "unknown"
    status, body = await send(
        api, f"{CREDS}&phonenumber=10086&message=hi&timeout=30&id=unk&report=String"
    )
    assert status == 200
    assert "\nresult: unknown\n" in body.decode()
    assert len(agent.handled) == 1  # the repeat was answered, not sent again


async def test_timeout_is_capped_by_config(nats_bus: Bus) -> None:
    config = api_config(nats_bus.config, max_timeout=0.1)
    async with running_api(nats_bus, config) as api:
        status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&timeout=3600")
        assert status == 200
        assert decode_json(body)["report"]["0"]["result"] == "sending"


# --- report formats ------------------------------------------------------------------------


async def test_string_report_layout(api: Api) -> None:
    await api.set_ports(port_state("lte-2"))
    status, body = await send(
        api, f"{CREDS}&phonenumber=10086,10087&message=xxx&report=string&port=2&id=s"
    )
    assert status == 200
    text = body.decode()
    times = re.findall(r"time: (.*)", text)
    assert len(times) == 2
    assert all(TIME.match(t) for t in times)
    expected = (
        "message:xxx\n"
        "--record 1 start--\nport: 2\nphonenumber: 10086\ntime: {}\nid: s-0\n"
        "result: sending\n--record 1 end--\n"
        "--record 2 start--\nport: 2\nphonenumber: 10087\ntime: {}\nid: s-1\n"
        "result: sending\n--record 2 end--\n"
    ).format(*times)
    assert text == expected


@pytest.mark.parametrize("value", ["NO", "no", "No"])
async def test_no_report_has_no_body(api: Api, value: str) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&report={value}")
    assert (status, body) == (200, b"")


async def test_no_report_error_says_why_in_a_header(api: Api) -> None:
    response = await api.client.get(f"/sendsms?{CREDS}&phonenumber=1&message=hi&report=NO")
    assert (response.status_code, response.content) == (400, b"")
    assert "phonenumber '1'" in response.headers["x-smsgate-error"]
    ok = await api.client.get(f"/sendsms?{CREDS}&phonenumber=10086&message=hi&report=NO")
    assert "x-smsgate-error" not in ok.headers


async def test_json_body_is_told_to_be_a_form(api: Api) -> None:
    response = await api.client.post(
        "/sendsms",
        json={"username": "smsuser", "password": PASSWORD, "phonenumber": "10086", "message": "x"},
    )
    assert response.status_code == 415
    error = decode_json(response.content)["error"]
    assert "application/json body is not read" in error
    assert "application/x-www-form-urlencoded" in error
    assert await api.jobs() == []


@pytest.mark.parametrize("value", ["json", "JSON", "Json"])
async def test_json_report_any_case(api: Api, value: str) -> None:
    response = await api.client.get(f"/sendsms?{CREDS}&phonenumber=1&message=hi&report={value}")
    assert response.status_code == 400  # the number is too short: the error is JSON too
    assert response.headers["content-type"] == "application/json"


async def test_default_report_from_config(nats_bus: Bus) -> None:
    async with running_api(nats_bus, api_config(nats_bus.config, default_report="String")) as api:
        status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi")
        assert status == 200
        assert body.startswith(b"message:hi\n--record 1 start--")


async def test_unknown_report_format(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&report=xml")
    assert status == 400
    assert "report must be JSON, String or NO" in decode_json(body)["error"]


# --- recipients and message ----------------------------------------------------------------


async def test_recipients_in_order_with_keys(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086,+4915550100,10088,&message=hi")
    assert status == 200
    report = decode_json(body)["report"]
    assert list(report) == ["0", "1", "2"]
    assert [r["phonenumber"] for r in report.values()] == ["10086", "+4915550100", "10088"]
    ids = [r["id"] for r in report.values()]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert [job.to for _, job in await api.jobs()] == ["10086", "+4915550100", "10088"]


async def test_encoded_plus_and_literal_plus(api: Api) -> None:
    status, _body = await send(api, f"{CREDS}&phonenumber=%2B4915550100,+4915550101&message=a+b")
    assert status == 200
    jobs = [job for _, job in await api.jobs()]
    assert [j.to for j in jobs] == ["+4915550100", "+4915550101"]
    assert jobs[0].text == "a b"


@pytest.mark.parametrize(
    ("numbers", "fragment"),
    [
        ("12a45", "'12a45' (recipient 1) is not a valid number"),
        ("10086,12", "'12' (recipient 2) is not a valid number"),
        ("", "phonenumber is required"),
    ],
)
async def test_invalid_numbers(api: Api, numbers: str, fragment: str) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber={numbers}&message=hi")
    assert status == 400
    assert fragment in decode_json(body)["error"]
    assert await api.jobs() == []


async def test_too_many_recipients(nats_bus: Bus) -> None:
    async with running_api(nats_bus, api_config(nats_bus.config, max_recipients=2)) as api:
        status, body = await send(api, f"{CREDS}&phonenumber=10086,10087,10088&message=hi")
        assert status == 400
        assert "at most 2" in decode_json(body)["error"]


async def test_unicode_message_of_any_script(api: Api) -> None:
    text = "尊敬的客户 Привет 👋 مرحبا"
    response = await api.client.get(
        "/sendsms",
        params={
            "username": "smsuser",
            "password": PASSWORD,
            "phonenumber": "10086",
            "message": text,
        },
    )
    assert response.status_code == 200
    assert decode_json(response.content)["message"] == text
    [(_, job)] = await api.jobs()
    assert job.text == text


async def test_message_over_the_part_limit_says_how_many_parts(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message={'a' * 1600}")
    assert status == 400
    assert "needs 11 SMS parts; at most 10" in decode_json(body)["error"]
    status, _ = await send(api, f"{CREDS}&phonenumber=10086&message={'a' * 1530}")
    assert status == 200  # exactly 10 parts


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("phonenumber=10086", "message is required"),
        ("phonenumber=10086&message=", "message is empty"),
        ("phonenumber=10086&message=%FF", "not valid UTF-8"),
        ("phonenumber=10086&message=hi&timeout=soon", "timeout must be a number"),
        ("phonenumber=10086&message=hi&timeout=-1", "timeout must be 0 or more"),
        ("phonenumber=10086&message=hi&id=a%20b", "id 'a b' is not usable"),
        ("phonenumber=10086&message=hi&dr=maybe", "dr must be 1 or 0"),
    ],
)
async def test_bad_parameters(api: Api, query: str, fragment: str) -> None:
    status, body = await send(api, f"{CREDS}&{query}")
    assert status == 400
    assert fragment in decode_json(body)["error"]


# --- ports ---------------------------------------------------------------------------------


async def test_port_by_name_number_and_list(api: Api) -> None:
    await api.set_ports(
        port_state("lte-1"),
        port_state("lte-2", PortStatus.BUSY, queue=3),
        port_state("lte-3", queue=1),
    )
    for token in ["lte-3", "3", "2,3"]:
        status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port={token}")
        assert status == 200
        assert decode_json(body)["report"]["0"]["port"] == "3"
    subjects_used = [s for s, _ in await api.jobs()]
    assert subjects_used == [subjects.send_port("lte-3")] * 3


@pytest.mark.parametrize("value", ["any", "ANY", "Any"])
async def test_port_any_is_any_ready_port(api: Api, value: str) -> None:
    await api.set_ports(port_state("lte-1"))
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port={value}")
    assert status == 200, body
    [(subject, job)] = await api.jobs()
    assert (subject, job.port) == (subjects.SEND_ANY, None)
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port=any,lte-1")
    assert status == 400
    assert "port=any stands alone" in decode_json(body)["error"]


async def test_least_work_spreads_a_burst(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-2"))
    status, body = await send(
        api, f"{CREDS}&phonenumber=10086,10087,10088,10089&port=1,2&message=hi"
    )
    assert status == 200
    ports = [r["port"] for r in decode_json(body)["report"].values()]
    assert sorted(ports) == ["1", "1", "2", "2"]


async def test_stale_port_counts_as_down(api: Api) -> None:
    old = contracts.utcnow().replace(year=2020)
    await api.set_ports(port_state("lte-1", updated=old), port_state("lte-2", queue=5))
    status, body = await send(api, f"{CREDS}&phonenumber=10086&port=1,2&message=hi")
    assert status == 200
    assert decode_json(body)["report"]["0"]["port"] == "2"


async def test_unknown_port_names_the_valid_ones(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-2"))
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port=9")
    assert status == 400
    assert decode_json(body)["error"] == "unknown port '9'; valid ports: lte-1, lte-2"


async def test_ambiguous_port_number(api: Api) -> None:
    await api.set_ports(port_state("hosta-lte-3"), port_state("hostb-lte-3"))
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port=3")
    assert status == 400
    assert "ambiguous" in decode_json(body)["error"]
    status, _ = await send(api, f"{CREDS}&phonenumber=10086&message=hi&port=hostb-lte-3")
    assert status == 200


async def test_port_not_allowed_for_user(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-3"))
    status, body = await send(
        api, "username=limited&password=limitedpw&phonenumber=10086&message=hi&port=lte-3"
    )
    assert status == 403
    assert "port lte-3 is not allowed for user limited" in decode_json(body)["error"]


async def test_restricted_user_is_pinned_to_an_allowed_port(api: Api) -> None:
    await api.set_ports(port_state("lte-1", PortStatus.DOWN), port_state("lte-3"))
    status, body = await send(api, "username=limited&password=limitedpw&phonenumber=1008&message=x")
    assert status == 200
    # lte-2 is not in the KV yet but the user's list names it: better than a down port.
    assert decode_json(body)["report"]["0"]["port"] in {"1", "2"}
    [(subject, job)] = await api.jobs()
    assert subject == subjects.send_port(job.port or "")
    assert job.port in {"lte-1", "lte-2"}


# --- credentials ---------------------------------------------------------------------------


async def test_wrong_password_is_401(api: Api) -> None:
    status, body = await send(api, "username=smsuser&password=nope&phonenumber=10086&message=hi")
    assert status == 401
    assert decode_json(body)["error"] == "wrong username or password"


async def test_missing_credentials_is_401(api: Api) -> None:
    status, body = await send(api, "phonenumber=10086&message=hi&report=String")
    assert status == 401
    assert body.startswith(b"message:hi\nerror: username and password are required")


async def test_http_basic(api: Api) -> None:
    token = base64.b64encode(f"smsuser:{PASSWORD}".encode()).decode()
    response = await api.client.get(
        "/sendsms?phonenumber=10086&message=hi", headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 200


async def test_plain_password_user(api: Api) -> None:
    status, _ = await send(api, "username=limited&password=limitedpw&phonenumber=10086&message=x")
    assert status == 200


async def test_failed_logins_are_throttled(api: Api) -> None:
    bad = "username=smsuser&password=wrong&phonenumber=10086&message=hi"
    for _ in range(5):
        assert (await send(api, bad))[0] == 401
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi")
    assert status == 429  # even the right password waits out the block
    assert "too many failed logins" in decode_json(body)["error"]
    # another user from the same client is not blocked
    status, _ = await send(api, "username=limited&password=limitedpw&phonenumber=10086&message=x")
    assert status == 200


# --- switches and delivery reports ---------------------------------------------------------


async def test_http_sending_switched_off(nats_bus: Bus) -> None:
    async with running_api(nats_bus, api_config(nats_bus.config, http_to_sms=False)) as api:
        status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi&report=String")
        assert status == 403
        assert b"sending over HTTP is switched off" in body


async def test_delivery_report_off_by_request_or_user(api: Api) -> None:
    await send(api, f"{CREDS}&phonenumber=10086&message=hi&dr=0")
    await send(api, "username=nodr&password=nodrpw&phonenumber=10086&message=hi&dr=1")
    await send(api, f"{CREDS}&phonenumber=10086&message=hi")
    assert [job.status_report for _, job in await api.jobs()] == [False, False, True]


# --- repeated ids --------------------------------------------------------------------------


async def test_repeated_id_is_not_queued_twice(api: Api, agent: AgentStandIn) -> None:
    query = f"{CREDS}&phonenumber=10086&message=hi&id=once"
    status, _first = await send(api, query)
    assert status == 200
    status, again = await send(api, query + "&timeout=5")
    assert status == 200
    # the repeat answers with the message's current status, whatever it is by now
    assert decode_json(again)["report"]["0"]["id"] == "once"
    assert decode_json(again)["report"]["0"]["result"] in {"sending", "sent"}
    # Wait until the stand-in has handled it, then a repeat reports sent.
    for _ in range(500):
        if agent.handled:
            break
        await asyncio.sleep(0.01)
    entry = await api.bus.buckets.messages.get("once")
    while contracts.decode(entry.value or b"", contracts.MessageStatus).state != "sent":
        await asyncio.sleep(0.01)
        entry = await api.bus.buckets.messages.get("once")
    status, third = await send(api, query)
    assert decode_json(third)["report"]["0"]["result"] == "sent"
    assert [job.id for job in agent.handled] == ["once"]


async def test_repeated_id_with_other_content_is_refused(api: Api) -> None:
    status, _ = await send(api, f"{CREDS}&phonenumber=10070&message=first&id=t9-idem")
    assert status == 200
    for other in ("phonenumber=10099&message=different", "phonenumber=10070&message=different"):
        status, body = await send(api, f"{CREDS}&{other}&id=t9-idem")
        assert status == 409, body
        answer = decode_json(body)
        assert answer["report"] == {}
        assert "t9-idem" in answer["error"]
        assert "new id" in answer["error"]
    # Of several recipients, one conflicting: none of them is queued.
    status, body = await send(api, f"{CREDS}&phonenumber=10070,10071&message=first&id=t9-idem")
    assert status == 200  # t9-idem-0 and t9-idem-1 are new ids
    status, body = await send(api, f"{CREDS}&phonenumber=10070,10072&message=first&id=t9-idem")
    assert status == 409, body
    info = await api.bus.js.stream_info(subjects.SEND_STREAM)
    assert info.state.messages == 3
    # The true repeat still answers with the stored status.
    status, body = await send(api, f"{CREDS}&phonenumber=10070&message=first&id=t9-idem")
    assert (status, decode_json(body)["report"]["0"]["phonenumber"]) == (200, "10070")


# --- full queue and NATS down --------------------------------------------------------------


async def test_full_queue_is_503_and_nothing_half_queued(api: Api) -> None:
    small = msgspec.structs.replace(api.bus.config, send_max_msgs=2)
    await bus.provision(api.bus.js, small)
    status, _ = await send(api, f"{CREDS}&phonenumber=10086&message=first")
    assert status == 200
    status, body = await send(
        api, f"{CREDS}&phonenumber=10087,10088,10089&message=hi&id=multi&report=String"
    )
    assert status == 503
    assert b"the send queue is full" in body
    assert [job.text for _, job in await api.jobs()] == ["first"]
    with pytest.raises(Exception, match=r"deleted|not found"):
        await api.bus.buckets.messages.get("multi-0")
    # a retry with the same id, once there is room, is a new request
    await bus.provision(api.bus.js, api.bus.config)
    status, body = await send(api, f"{CREDS}&phonenumber=10087,10088,10089&message=hi&id=multi")
    assert status == 200
    assert len(await api.jobs()) == 4


async def test_nats_down_is_503(nats_bus: Bus) -> None:
    config = api_config(NatsConfig(url=f"nats://127.0.0.1:{free_port()}"))
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get(f"/sendsms?{CREDS}&phonenumber=10086&message=hi")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert "not connected to NATS" in decode_json(response.content)["error"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503


async def test_jobs_carry_what_the_agent_needs(api: Api) -> None:
    await send(api, f"{CREDS}&phonenumber=10086&message=hi&id=full&timeout=0")
    [(_, job)] = await api.jobs()
    assert isinstance(job, SendJob)
    assert (job.id, job.caller_id, job.user, job.port) == ("full", "full", "smsuser", None)
    assert job.port_wait == 300.0


# --- the answer itself: headers, and the same answer with or without middleware ----------


async def test_answer_headers(api: Api) -> None:
    ok = await api.client.get(f"/sendsms?{CREDS}&phonenumber=10086&message=hi&report=String")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "text/plain; charset=utf-8"
    assert int(ok.headers["content-length"]) == len(ok.content)
    wrong = await api.client.get("/sendsms?username=smsuser&password=no&phonenumber=1&message=x")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Basic realm="smsgate"'
    assert wrong.headers["content-type"] == "application/json"


@pytest.mark.parametrize("cors", [False, True])
async def test_same_answer_with_or_without_middleware(nats_bus: Bus, cors: bool) -> None:
    # Without CORS the app answers /sendsms itself (raw ASGI); with it, through the router.
    async with running_api(nats_bus, api_config(nats_bus.config, cors=cors)) as api:
        response = await api.client.get(
            f"/sendsms?{CREDS}&phonenumber=10086&message=hi&id=mw-{cors}",
            headers={"Origin": "http://app.example"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        record = decode_json(response.content)["report"]["0"]
        assert (record["id"], record["result"]) == (f"mw-{cors}", "sending")
        assert ("access-control-allow-origin" in response.headers) is cors
        wrong = await api.client.get("/sendsms?username=smsuser&password=no&phonenumber=1")
        assert wrong.status_code == 401
        assert "www-authenticate" in wrong.headers
        text = (await api.client.get("/metrics")).text
        assert 'smsgate_api_requests_total{route="/sendsms",outcome="ok"} 1' in text
        assert 'smsgate_api_requests_total{route="/sendsms",outcome="rejected"} 1' in text


async def test_generated_id_is_queued_in_the_status_api(api: Api) -> None:
    status, body = await send(api, f"{CREDS}&phonenumber=10086&message=hi")
    assert status == 200
    message_id = decode_json(body)["report"]["0"]["id"]
    token = base64.b64encode(f"smsuser:{PASSWORD}".encode()).decode()
    response = await api.client.get(
        f"/api/v1/messages/{message_id}", headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 200
    assert decode_json(response.content)["state"] == "queued"
