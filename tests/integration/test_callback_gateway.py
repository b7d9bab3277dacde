"""Gateway-compatible callbacks to a real receiver: exact fields, every script, the PHP demo."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from smsgate import contracts
from starlette.responses import PlainTextResponse, Response

from tests.conftest import SHARED, Bus
from tests.integration.callback_fixtures import (
    IMSI,
    Hit,
    Receiver,
    callback_config,
    inbound,
    port_event,
    publish,
    report,
    result,
    running,
    until,
)

pytestmark = pytest.mark.timeout(60)

TEXTS = {
    "latin": "Hello, world! Ça va? 10% off",
    "gsm-extension": "Price: 5€ [a] {b} \\ ~ ^ |",
    "chinese": "【中国移动】尊敬的客户，您当前账户余额21.19元。",
    "emoji": "👍🏽 ok 🎉 👨‍👩‍👧",
    "reserved": "a&b+c=d %20 ?#/; x=1&y=2",
}

# What the seed gateway's receivesms.php wrote for the demo in the reference doc ("Received:").
DEMO_SMS = (
    "【好网选移动，流量放心用！猛戳 dx.10086.cn/bx1h05 】尊敬的客户：您当前账户余额21.19元，"
    "实时话费0.00元。86.cn/cz 。承诺使用指定4G套餐，最高可免费体验200M宽带（体验时长和资费标准"
    "请以当地政策为准），快点击 http://吧！详询1008616。【中国移动】"
)
DEMO_OUTPUT = f"""Type: SMS-Status-Result
Time: 2019-08-02 14:36:07
ID: 39fd7439
IMSI: 460004372167365
Status: Sent
Number: 10086
Port: 1
SMS:

Type:
Time: 2019/08/02 14:35:40
ID:
IMSI: 460004372167365
Status:
Number: 10086
Port: 1
SMS: {DEMO_SMS}

Type: SMS-Status-Report
Time: 2019/08/02 14:36:08
ID: 39fd7439
IMSI: 460004372167365
Status: Message received on handset
Number: 10086
Port: 1
SMS:"""


def _gateway(
    number: str,
    port: str,
    caller_id: str,
    message: str,
    time: str,
    kind: str,
    status: str,
    reason: str | None,
) -> list[tuple[str, str]]:
    fields = [
        ("num", number),
        ("port", port),
        ("portname", f"lte-{port}"),
        ("id", caller_id),
        ("message", message),
        ("time", time),
        ("type", kind),
        ("imsi", IMSI),
        ("status", status),
    ]
    if reason is not None:
        fields.append(("reason", reason))
    return [*fields, ("gw", "farm-a")]


async def test_every_event_type_arrives_with_the_documented_fields(nats_bus: Bus) -> None:
    async with Receiver() as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        config = callback_config(
            nats_bus.config,
            url=receiver.url,
            extra={"gw": "farm-a"},
            webhooks=[
                {"name": "forms", "url": f"{base}/form", "format": "form"},
                {"name": "events", "url": f"{base}/json", "format": "json"},
            ],
        )
        sent = result("lte-1")
        failed = result(
            "lte-12", caller_id=None, status=contracts.SendStatus.FAILED, reason="+CMS ERROR: 38"
        )
        # Its holder was lost mid-send: it may have reached the network, nobody can tell.
        unknown = result(
            "lte-4", caller_id="u-1", status=contracts.SendStatus.UNKNOWN, reason="interrupted"
        )
        delivered = report("lte-1")
        undelivered = report(
            "lte-2", state=contracts.DeliveryState.FAILED, reason="unknown subscriber"
        )
        expired = report("lte-3", state=contracts.DeliveryState.EXPIRED, reason="validity expired")
        texts = {name: inbound(text, "lte-7") for name, text in TEXTS.items()}
        events: list[contracts.Event] = [sent, failed, unknown, delivered, undelivered, expired]
        events += texts.values()
        async with running(config):
            ids = await publish(nats_bus.js, events)
            await until(lambda: len(receiver.ok_ids()) == 3 * len(ids), "every event, 3 ways")

    by_path: dict[str, dict[str, Hit]] = {}
    for hit in receiver.hits:
        by_path.setdefault(hit.path, {})[hit.event_id] = hit
    gateway, form, json = by_path["/api/http-sms/receive"], by_path["/form"], by_path["/json"]
    assert set(gateway) == set(form) == set(json) == set(ids)

    result_time, smsc_time = "2019-08-02 14:36:07", "2019/08/02 14:36:08"
    expected = {
        sent.event_id: _gateway(
            "10086", "1", "39fd7439", "", result_time, "SMS-Status-Result", "Sent", ""
        ),
        failed.event_id: _gateway(
            "10086",
            "12",
            failed.id,
            "",
            result_time,
            "SMS-Status-Result",
            "Failed",
            "+CMS ERROR: 38",
        ),
        unknown.event_id: _gateway(
            "10086", "4", "u-1", "", result_time, "SMS-Status-Result", "Unknown", "interrupted"
        ),
        delivered.event_id: _gateway(
            "10086",
            "1",
            "39fd7439",
            "",
            smsc_time,
            "SMS-Status-Report",
            "Message received on handset",
            "",
        ),
        undelivered.event_id: _gateway(
            "10086",
            "2",
            "39fd7439",
            "",
            smsc_time,
            "SMS-Status-Report",
            "Message delivery failed",
            "unknown subscriber",
        ),
        expired.event_id: _gateway(
            "10086",
            "3",
            "39fd7439",
            "",
            smsc_time,
            "SMS-Status-Report",
            "Message validity period expired",
            "validity expired",
        ),
    }
    for sms in texts.values():
        expected[sms.event_id] = _gateway(
            "10086", "7", "", sms.text, "2019/08/02 14:35:40", "", "", None
        )
    for event in events:
        hit = gateway[event.event_id]
        assert hit.method == "GET"
        assert hit.params == expected[event.event_id]
        # Form POST: the same fields in the body; `gw` is the gateway url's own extra.
        assert form[event.event_id].method == "POST"
        assert form[event.event_id].params == expected[event.event_id][:-1]
        assert form[event.event_id].headers["content-type"] == "application/x-www-form-urlencoded"
        # JSON POST: the event itself, event id included.
        body = json[event.event_id].body
        assert contracts.decode_event(body) == event
        assert json[event.event_id].headers["content-type"] == "application/json"
        assert contracts.decode_event(body).event_id == event.event_id

    # Every value travels percent-encoded UTF-8, a space as %20, never `+`.
    chinese = gateway[texts["chinese"].event_id].query.decode("ascii")
    assert "message=" + urllib.parse.quote(TEXTS["chinese"], safe="") in chinese
    assert "time=2019%2F08%2F02%2014%3A35%3A40" in chinese
    reserved = gateway[texts["reserved"].event_id].query.decode("ascii")
    assert "a%26b%2Bc%3Dd%20%2520" in reserved


async def test_the_url_keeps_its_own_query_and_port_events_reach_json(nats_bus: Bus) -> None:
    async with Receiver() as receiver:
        config = callback_config(
            nats_bus.config,
            url=receiver.url + "?key=s3cret",
            webhooks=[
                {
                    "name": "ports",
                    "url": f"http://127.0.0.1:{receiver.port}/ports",
                    "format": "json",
                    "events": ["port"],
                    "ports": ["lte-5"],
                },
            ],
        )
        events: list[contracts.Event] = [result("lte-1"), port_event("lte-4"), port_event("lte-5")]
        async with running(config):
            await publish(nats_bus.js, events)
            await until(lambda: len(receiver.ok_ids()) == 2, "result and lte-5's port event")
    gateway, ports = receiver.hits
    if gateway.path == "/ports":
        gateway, ports = ports, gateway
    assert gateway.params[0] == ("key", "s3cret")
    assert gateway.event_id == events[0].event_id
    assert contracts.decode_event(ports.body) == events[2]
    assert ports.headers["x-smsgate-event-type"] == "port"


def php_receiver(log: Path) -> Receiver:
    """receivesms.php from the reference doc, line for line, writing to `log`."""
    receiver = Receiver()

    async def respond(hit: Hit) -> Response:
        request = dict(hit.params)  # $_REQUEST: the query of a GET, the body of a POST

        def field(name: str) -> str:
            return request.get(name, "")  # PHP reads a missing key as empty

        content = f"Type: {field('type')}\n"
        content += f"Time: {field('time')}\n"
        content += f"ID: {field('id')}\n"
        content += f"IMSI: {field('imsi')}\n"
        content += f"Status: {field('status')}\n"
        content += f"Number: {field('num')}\n"
        content += f"Port: {field('port')}\n"
        content += f"SMS: {field('message')}\n"
        with log.open("a", encoding="utf-8") as file:  # file_put_contents(..., FILE_APPEND)
            file.write(content + "\n")  # PHP_EOL
        return PlainTextResponse("")

    receiver.respond = respond
    return receiver


async def test_the_php_demo_receiver_writes_the_demo_output(nats_bus: Bus, tmp_path: Path) -> None:
    log = tmp_path / "smsreport"
    async with php_receiver(log) as receiver:
        # One lane per port keeps result, inbound and report in the demo's order.
        config = callback_config(nats_bus.config, url=receiver.url, ordered=True)
        events: list[contracts.Event] = [result(), inbound(DEMO_SMS), report()]
        async with running(config):
            await publish(nats_bus.js, events)
            await until(lambda: len(receiver.ok_ids()) == 3, "the three demo callbacks")
    written = log.read_text(encoding="utf-8")
    # The doc shows `Type:` where PHP writes `Type: ` (trailing blanks are lost in the doc).
    lines = [line.rstrip() for line in written.rstrip("\n").split("\n")]
    assert lines == DEMO_OUTPUT.split("\n")


def test_the_demo_output_is_the_reference_docs() -> None:
    doc = SHARED / "reference" / "gateway-http-api.txt"
    # ../shared sits beside the repository in every checkout and in CI, as the PDU vectors do.
    assert doc.exists(), f"{doc} missing: the reference material must sit beside the repository"
    text = doc.read_text(encoding="utf-8")
    block = text.split("Received:", 1)[1].split("```")[1].strip("\n")
    assert [line.rstrip() for line in block.split("\n")] == DEMO_OUTPUT.split("\n")
