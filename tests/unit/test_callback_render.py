"""Gateway fields and their encoding, without sockets: names, times, texts, extras, scripts."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import msgspec
import pytest
from smsgate import contracts
from smsgate.config import CallbackConfig, CallbackParams
from smsgate_callback import render
from smsgate_callback.render import GatewayStyle, encode_fields, gateway_fields

UTC8 = dt.timezone(dt.timedelta(hours=8))
T = dt.datetime(2019, 8, 2, 6, 36, 7, tzinfo=dt.UTC)
SCTS = dt.datetime(2019, 8, 2, 14, 35, 40, tzinfo=UTC8)


def style(**callback: object) -> GatewayStyle:
    config = msgspec.convert({"time_zone": "+08:00", **callback}, CallbackConfig)
    return GatewayStyle.from_config(config)


def sent(**fields: object) -> contracts.SendResult:
    values: dict[str, object] = {
        "event_id": "e1",
        "id": "39fd7439",  # one recipient: the message id is the caller's id
        "caller_id": "39fd7439",
        "port": "lte-1",
        "port_number": 1,
        "imsi": "460004372167365",
        "time": T,
        "to": "10086",
        "status": "sent",
    }
    values.update(fields)
    return msgspec.convert(values, contracts.SendResult)


def sms(text: str, **fields: object) -> contracts.InboundSms:
    values: dict[str, object] = {
        "event_id": "e2",
        "id": "m2",
        "port": "lte-1",
        "port_number": 1,
        "imsi": "4600",
        "time": T,
        "sender": "+8613800138000",
        "text": text,
        "smsc_time": SCTS,
    }
    values.update(fields)
    return msgspec.convert(values, contracts.InboundSms)


def dlr(state: str, smsc_time: dt.datetime | None = SCTS) -> contracts.DeliveryReport:
    return contracts.DeliveryReport(
        event_id="e3",
        id="m3",
        port="lte-2",
        port_number=2,
        time=T,
        to="10086",
        state=contracts.DeliveryState(state),
        reason="absent subscriber",
        smsc_time=smsc_time,
    )


def test_send_result_fields_in_gateway_order() -> None:
    assert gateway_fields(sent(), style()) == [
        ("num", "10086"),
        ("port", "1"),
        ("portname", "lte-1"),
        ("id", "39fd7439"),
        ("message", ""),
        ("time", "2019-08-02 14:36:07"),
        ("type", "SMS-Status-Result"),
        ("imsi", "460004372167365"),
        ("status", "Sent"),
        ("reason", ""),
    ]


def test_failed_result_carries_its_reason_and_the_generated_message_id() -> None:
    fields = dict(
        gateway_fields(
            sent(status="failed", reason="+CMS ERROR: 38", id="m1", caller_id=None), style()
        )
    )
    assert (fields["status"], fields["reason"], fields["id"]) == ("Failed", "+CMS ERROR: 38", "m1")


def test_an_unknown_outcome_is_unknown_with_its_reason() -> None:
    """Not `Failed`: it may have reached the network. A receiver that takes anything but
    `Sent` for a failure reads it as before."""
    unknown = sent(status="unknown", reason="interrupted", id="m2", caller_id=None)
    fields = dict(gateway_fields(unknown, style()))
    assert (fields["type"], fields["status"], fields["reason"]) == (
        "SMS-Status-Result",
        "Unknown",
        "interrupted",
    )
    # A receiver that wants the old two words can have them back.
    legacy = dict(gateway_fields(unknown, style(status_text={"unknown": "Failed"})))
    assert legacy["status"] == "Failed"


def test_each_recipient_of_several_is_named_by_its_own_message_id() -> None:
    # phonenumber=10048,10048&id=t4: two messages, t4-0 and t4-1, told apart in callbacks.
    first = dict(gateway_fields(sent(id="t4-0", caller_id="t4", to="10048"), style()))
    second = dict(gateway_fields(sent(id="t4-1", caller_id="t4", to="10048"), style()))
    assert (first["id"], second["id"]) == ("t4-0", "t4-1")
    report = dlr("delivered")
    assert dict(gateway_fields(report, style()))["id"] == report.id


@pytest.mark.parametrize(
    ("state", "text", "reason"),
    [
        ("delivered", "Message received on handset", ""),
        ("failed", "Message delivery failed", "absent subscriber"),
        ("expired", "Message validity period expired", "absent subscriber"),
    ],
)
def test_report_status_texts(state: str, text: str, reason: str) -> None:
    fields = dict(gateway_fields(dlr(state), style()))
    assert fields["type"] == "SMS-Status-Report"
    assert (fields["status"], fields["reason"]) == (text, reason)
    assert fields["time"] == "2019/08/02 14:35:40"
    assert (fields["port"], fields["portname"], fields["imsi"]) == ("2", "lte-2", "")


def test_expired_without_a_report_says_why_and_prints_when_it_was_decided() -> None:
    expired = msgspec.structs.replace(
        dlr("expired", None), reason="no delivery report within 3 days, 1:00:00"
    )
    fields = dict(gateway_fields(expired, style()))
    assert fields["status"] == "Message validity period expired"
    assert fields["reason"] == "no delivery report within 3 days, 1:00:00"
    assert fields["time"] == "2019/08/02 14:36:07"


def test_unmatched_report_names_what_it_carried_under_its_own_id() -> None:
    unmatched = msgspec.structs.replace(
        dlr("unmatched"),
        id="r0123456789abcdef0123",
        reference=42,
        status_code=0,
        reason="received by the recipient",
    )
    fields = dict(gateway_fields(unmatched, style()))
    assert fields["status"] == "Delivery report not matched"
    assert fields["id"] == "r0123456789abcdef0123"
    assert fields["reason"] == "TP-MR 42, status 0: received by the recipient"
    assert (fields["num"], fields["time"]) == ("10086", "2019/08/02 14:35:40")


def test_report_without_smsc_time_uses_its_own_time_in_the_smsc_format() -> None:
    assert dict(gateway_fields(dlr("delivered", None), style()))["time"] == "2019/08/02 14:36:07"


def test_inbound_has_empty_type_id_and_status_and_the_whole_text() -> None:
    assert gateway_fields(sms("你好 & +1"), style()) == [
        ("num", "+8613800138000"),
        ("port", "1"),
        ("portname", "lte-1"),
        ("id", ""),
        ("message", "你好 & +1"),
        ("time", "2019/08/02 14:35:40"),
        ("type", ""),
        ("imsi", "4600"),
        ("status", ""),
    ]


def test_smsc_time_keeps_the_smscs_own_zone_whatever_time_zone_says() -> None:
    scts = dt.datetime(2024, 1, 5, 23, 59, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    for zone in ("UTC", "+08:00", "Asia/Tokyo", "local"):
        fields = dict(gateway_fields(sms("x", smsc_time=scts), style(time_zone=zone)))
        assert fields["time"] == "2024/01/05 23:59:01"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "06:36:07"),
        ("+08:00", "14:36:07"),
        ("-0330", "03:06:07"),
        ("Europe/Berlin", "08:36:07"),
    ],
)
def test_result_time_in_the_configured_zone(zone: str, expected: str) -> None:
    assert dict(gateway_fields(sent(), style(time_zone=zone)))["time"] == f"2019-08-02 {expected}"


def test_local_zone_is_this_hosts() -> None:
    local = T.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert dict(gateway_fields(sent(), style(time_zone="local")))["time"] == local


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        render.resolve_zone("Mars/Base")


def test_names_formats_texts_and_extras_are_configurable() -> None:
    custom = style(
        params={"phonenumber": "phone", "portname": "", "status": "state", "reason": "why"},
        extra={"gateway": "farm-a", "key": "k&1"},
        status_text={"sent": "OK"},
        result_time_format="%d.%m.%Y %H:%M",
    )
    assert gateway_fields(sent(), custom) == [
        ("phone", "10086"),
        ("port", "1"),
        ("id", "39fd7439"),
        ("message", ""),
        ("time", "02.08.2019 14:36"),
        ("type", "SMS-Status-Result"),
        ("imsi", "460004372167365"),
        ("state", "OK"),
        ("why", ""),
        ("gateway", "farm-a"),
        ("key", "k&1"),
    ]


def test_extras_may_not_shadow_a_field_and_status_keys_are_checked() -> None:
    with pytest.raises(ValueError, match=r"extra fields \['id', 'num'\] clash"):
        style(extra={"num": "1", "id": "2"})
    with pytest.raises(ValueError, match="unknown keys"):
        style(status_text={"delivred": "x"})


def test_a_webhooks_own_names_override_the_callback_ones() -> None:
    config = CallbackConfig(extra={"a": "1"})
    mine = GatewayStyle.from_config(config, params=CallbackParams(message="text"), extra={})
    assert ("text", "hi") in gateway_fields(sms("hi"), mine)
    assert ("a", "1") not in gateway_fields(sms("hi"), mine)


def test_port_number_comes_from_the_name_when_the_event_has_none() -> None:
    fields = dict(gateway_fields(sent(port="hostb-lte-17", port_number=None), style()))
    assert (fields["port"], fields["portname"]) == ("17", "hostb-lte-17")
    assert dict(gateway_fields(sent(port="modem", port_number=None), style()))["port"] == ""


def test_port_events_render_as_port_status() -> None:
    state = contracts.PortState(
        port="lte-3", agent="a", device="d", status=contracts.PortStatus.DOWN, updated=T
    )
    event = contracts.PortEvent(event_id="e", port="lte-3", time=T, change="down", state=state)
    fields = dict(gateway_fields(event, style()))
    assert (fields["type"], fields["status"], fields["port"]) == ("Port-Status", "down", "3")


TEXTS = [
    "plain latin",
    "GSM extension € [ ] { } \\ ~ ^ |",
    "中文短信【中国移动】",
    "emoji 👍🏽🎉 and ZWJ 👨‍👩‍👧",
    "a&b=c+d %41 #frag ?q /p ;x",
    "line\nbreak\ttab",
]


@pytest.mark.parametrize("text", TEXTS)
def test_encoding_round_trips_through_a_standard_decoder(text: str) -> None:
    fields = gateway_fields(sms(text), style(extra={"tag": text}))
    query = encode_fields(fields)
    assert query.isascii()
    assert set(query) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%&="
    )
    assert urllib.parse.parse_qsl(query, keep_blank_values=True) == fields


def test_space_is_percent_20_and_plus_is_escaped() -> None:
    assert encode_fields([("m", "a b+c&d")]) == "m=a%20b%2Bc%26d"
    assert encode_fields([("time", "2019-08-02 14:36:07")]) == "time=2019-08-02%2014%3A36%3A07"


def test_json_body_is_the_event() -> None:
    event = sms("hi")
    assert contracts.decode_event(render.json_body(event)) == event
    assert b'"type":"inbound"' in render.json_body(event)
    assert b'"event_id":"e2"' in render.json_body(event)
