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
