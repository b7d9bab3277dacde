"""Gateway report rendering, access-log redaction, metrics text and the public names."""

from __future__ import annotations

import datetime as dt
import time

import msgspec
import smsgate_api
from smsgate.contracts import MessageState
from smsgate_api import sendsms_reply
from smsgate_api.access_log import redact_query
from smsgate_api.app import parse_listen
from smsgate_api.ids import time_ordered
from smsgate_api.metrics import Metrics
from smsgate_api.params import ReportFormat
from smsgate_api.sending import RecipientOutcome, message_ids

WHEN = dt.datetime(2014, 4, 29, 11, 11, 11).astimezone()
OUTCOMES = [
    RecipientOutcome(id="1122", to="10086", state=MessageState.QUEUED, time=WHEN, port_number=1),
    RecipientOutcome(id="1123", to="10087", state=MessageState.FAILED, time=WHEN, port_number=2),
]


def test_json_matches_the_reference_layout() -> None:
    body = sendsms_reply.render(ReportFormat.JSON, "xxx", OUTCOMES)
    assert msgspec.json.decode(body) == {
        "message": "xxx",
        "report": {
            "0": {"port": "1", "phonenumber": "10086", "time": "2014-04-29 11:11:11",
                  "id": "1122", "result": "sending"},
            "1": {"port": "2", "phonenumber": "10087", "time": "2014-04-29 11:11:11",
                  "id": "1123", "result": "fail"},
        },
    }  # fmt: skip
    assert body.startswith(b'{"message":"xxx","report":{"0":{"port":"1","phonenumber"')


def test_string_and_no() -> None:
    text = sendsms_reply.render(ReportFormat.STRING, "xxx", OUTCOMES[:1]).decode()
    assert text == (
        "message:xxx\n--record 1 start--\nport: 1\nphonenumber: 10086\n"
        "time: 2014-04-29 11:11:11\nid: 1122\nresult: sending\n--record 1 end--\n"
    )
    assert sendsms_reply.render(ReportFormat.NO, "xxx", OUTCOMES) == b""
    assert sendsms_reply.render_error(ReportFormat.STRING, "x", "bad") == b"message:x\nerror: bad\n"


def test_results_map_to_gateway_words() -> None:
    words = {state: sendsms_reply.gateway_result(state) for state in MessageState}
    assert set(words.values()) == {"sending", "sent", "fail", "unknown"}
    assert words[MessageState.DELIVERED] == "sent"
    # Nobody can tell whether it reached the network: not `fail`, which invites a resend.
    assert words[MessageState.UNKNOWN] == "unknown"


def test_message_ids() -> None:
    assert message_ids("abc", 1) == ["abc"]
    assert message_ids("abc", 3) == ["abc-0", "abc-1", "abc-2"]
    generated = message_ids(None, 2)
    assert len(set(generated)) == 2
    assert all(len(i) == 32 for i in generated)
    # Drawn in blocks: still unique, still 32 hex digits, across many blocks.
    many = message_ids(None, 1000)
    assert len(set(many) | set(generated)) == 1002
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in many)


def test_generated_ids_sort_by_the_time_they_were_made() -> None:
    """The history's indexes take ids made together onto the same pages (random ids cost
    SQLite 6x the bytes written per event)."""
    before = time.time_ns() // 1_000_000
    [made] = message_ids(None, 1)
    after = time.time_ns() // 1_000_000
    assert before <= int(made[:12], 16) <= after
    assert time_ordered(before, "f" * 32) < time_ordered(before + 1, "0" * 32)
    assert time_ordered(0x1_0000_0000_0001, "a" * 32) == "000000000001" + "a" * 20
    random_parts = {i[12:] for i in message_ids(None, 500)}
    assert len(random_parts) == 500  # 80 random bits each


def test_access_log_redaction() -> None:
    query = "username=u&Password=p%21&phonenumber=1&message=hi&id=7&port=2&timeout=5"
    assert redact_query(query) == (
        "username=***&Password=***&phonenumber=***&message=***&id=7&port=2&timeout=5"
    )


def test_access_log_redaction_reads_names_as_the_endpoint_does_and_keeps_the_rest() -> None:
    # Names unquoted and without case or spaces around them, as parse_urlencoded reads them;
    # a kept name's value holding `=` masked; a pair without `=` and an empty one as they came.
    query = "%70ort=3&+ID+=m1&Report=JSON&port=a=password=x&flag&&dr=0&p%61ssword=s"
    assert redact_query(query) == (
        "%70ort=3&+ID+=m1&Report=JSON&port=***&flag&&dr=0&p%61ssword=***"
    )
    assert redact_query("") == ""


def test_listen_addresses() -> None:
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::1]:9") == ("::1", 9)


def test_metrics_text() -> None:
    metrics = Metrics()
    metrics.request("/sendsms", 200, 0.003)
    metrics.request("/sendsms", 503, 0.2)
    metrics.message("queued", 2)
    text = metrics.render(queue_depth=5, ports={"ready": 3}, nats_connected=True)
    assert 'smsgate_api_requests_total{route="/sendsms",outcome="error"} 1' in text
    assert 'smsgate_api_request_duration_seconds_bucket{route="/sendsms",le="0.005"} 1' in text
    assert 'smsgate_api_request_duration_seconds_bucket{route="/sendsms",le="+Inf"} 2' in text
    assert "smsgate_send_queue_depth 5" in text
    assert 'smsgate_ports{status="ready"} 3' in text


def test_public_names() -> None:
    assert sorted(smsgate_api.__all__) == [
        "GeneratedUser", "create_app", "ensure_users", "hash_password", "run_api", "serve_api",
    ]  # fmt: skip
