import json
import logging

from smsgate import logs


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "smsgate.api", "levelname": "INFO", "msg": msg})
    rec.__dict__.update(extra)
    return rec


def test_secrets_are_redacted_in_text_and_json() -> None:
    line = "GET /sendsms?username=u&password=s3cret&phonenumber=1 token=abc"
    text = logs.TextFormatter().format(record(line))
    assert "s3cret" not in text
    assert "abc" not in text
    assert "password=***" in text
    assert "phonenumber=1" in text
    entry = json.loads(logs.JsonFormatter().format(record(line, message_id="m1", port="lte-1")))
    assert "s3cret" not in entry["msg"]
    assert entry["message_id"] == "m1"
    assert entry["port"] == "lte-1"
    assert entry["level"] == "info"
    assert entry["logger"] == "smsgate.api"


def test_credentials_in_urls_are_redacted() -> None:
    lines = [
        "nats reconnected to ParseResult(scheme='nats', netloc='agent:pw-1@10.0.0.1:4222')",
        "cannot reach NATS at nats://agent:pw-1@10.0.0.1:4222,nats://t0ken@10.0.0.2:4222: x",
        "connected to NATS at agent:pw-1@10.0.0.1:4222",
    ]
    for line in lines:
        text = logs.redact(line)
        assert "pw-1" not in text
        assert "t0ken" not in text
        assert "10.0.0.1:4222" in text
    assert logs.redact("lte-1: sent to +4915112345678 at 12:30") == (
        "lte-1: sent to +4915112345678 at 12:30"
    )
