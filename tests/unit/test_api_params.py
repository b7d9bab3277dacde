"""Gateway parameter decoding and validation, without a server."""

from __future__ import annotations

import pytest
from smsgate_api import params
from smsgate_api.errors import ApiError
from smsgate_api.params import ReportFormat


def test_names_match_without_case_and_aliases() -> None:
    fields = params.parse_urlencoded(b"UserName=a&phoneNumber=10086&Message=hi+there&onenumber=1")
    assert fields == {"username": "a", "phonenumber": "1", "message": "hi there"}


def test_plus_in_numbers_is_the_international_prefix() -> None:
    fields = params.parse_urlencoded(b"phonenumber=+4915550100,%2B4915550101&message=a+b")
    assert fields["phonenumber"] == "+4915550100,+4915550101"
    assert fields["message"] == "a b"


def test_utf8_and_bad_utf8() -> None:
    assert params.parse_urlencoded(b"message=%E4%BD%A0%E5%A5%BD")["message"] == "你好"
    with pytest.raises(ApiError, match="not valid UTF-8"):
        params.parse_urlencoded(b"message=%FF")


def test_raw_bad_utf8_names_the_parameter() -> None:
    # No percent sign: the whole-string fast path gives way to the per-pair one.
    with pytest.raises(ApiError, match="'message' is not valid UTF-8"):
        params.parse_urlencoded(b"username=u&message=\xff")


@pytest.mark.parametrize(
    "data",
    [b"a=1&B=2", b"&&a=&=x&b", b" Message =hi&onenumber=1&phonenummer=2", b"x=1&x=2",
     "message=你好&id=7".encode()],
)  # fmt: skip
def test_plain_and_encoded_forms_decode_alike(data: bytes) -> None:
    # The fast path (nothing encoded) against the per-pair path, which one '%' forces.
    slow = params.parse_urlencoded(data + b"&zz=%41")
    assert slow.pop("zz") == "A"
    assert params.parse_urlencoded(data) == slow


def test_body_fields_override() -> None:
    fields = params.parse_urlencoded(b"message=a")
    params.parse_urlencoded(b"message=b", fields)
    assert fields["message"] == "b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ReportFormat.STRING), ("json", ReportFormat.JSON), ("STRING", ReportFormat.STRING),
     ("No", ReportFormat.NO)],
)  # fmt: skip
def test_report_format(value: str, expected: ReportFormat) -> None:
    assert params.report_format({"report": value}, "String") is expected


def test_recipients() -> None:
    assert params.recipients(" 10086, +4915550100 ,", 5) == ["10086", "+4915550100"]
    with pytest.raises(ApiError, match="at most 1 per request"):
        params.recipients("10086,10087", 1)
    with pytest.raises(ApiError, match=r"'1-2' \(recipient 1\)"):
        params.recipients("1-2", 5)
    with pytest.raises(ApiError, match="is not a valid number"):
        params.recipients("1" * 21, 5)


def test_message_length_in_parts() -> None:
    assert params.message_text("a" * 1530, 10) == "a" * 1530
    with pytest.raises(ApiError, match="needs 11 SMS parts; at most 10"):
        params.message_text("a" * 1531, 10)
    with pytest.raises(ApiError, match="needs 2 SMS parts; at most 1"):
        params.message_text("你" * 71, 1)


def test_ports_timeout_id_flag() -> None:
    assert params.ports("2, 3,") == ["2", "3"]
    assert params.ports("") is None
    assert params.timeout("60", 30) == 30
    assert params.timeout(None, 30) == 0
    with pytest.raises(ApiError):
        params.timeout("nan", 30)
    assert params.caller_id(" edeb7540 ") == "edeb7540"
    assert params.caller_id("") is None
    with pytest.raises(ApiError):
        params.caller_id("a/b")
    assert params.flag("OFF", "dr", True) is False
    assert params.flag(None, "dr", True) is True
