"""27.005 text-mode fields and USSD strings to and from TPDUs (smsgate.pdu.text_mode)."""

from __future__ import annotations

import datetime as dt

import pytest
from smsgate.pdu import Concat, PduError, decode, encode_deliver, encode_submit
from smsgate.pdu.text_mode import (
    UDHI,
    deliver_from_text,
    pack_ussd,
    parse_text_time,
    report_from_text,
    septet_count,
    submit_from_user_data,
    text_time,
    text_user_data,
    unpack_ussd,
    user_data,
)

MOMENT = dt.datetime(2026, 12, 3, 9, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_ussd_packed_as_huawei_sticks_want_it() -> None:
    assert pack_ussd("*100#") == "AA180C3602"  # the string every Huawei USSD how-to shows
    assert unpack_ussd("AA180C3602") == "*100#"
    for text in ("Your balance is 12.50 USD", "1234567", "abcdefgh"):  # 7 and 8: CR padding
        assert unpack_ussd(pack_ussd(text)) == text
    assert unpack_ussd("*100#") is None
    assert unpack_ussd("") is None


def test_text_time_both_ways() -> None:
    assert text_time(MOMENT) == "26/12/03,09:05:07+32"
    assert parse_text_time('"26/12/03,09:05:07+32"') == MOMENT
    west = parse_text_time("26/01/31,23:59:59-20")
    assert west.utcoffset() == dt.timedelta(hours=-5)
    with pytest.raises(PduError, match="not a text-mode time"):
        parse_text_time("2026-12-03 09:05")
    with pytest.raises(PduError, match="text-mode time"):
        parse_text_time("26/13/03,09:05:07+00")


@pytest.mark.parametrize("text", ["ж" * 100, "plain GSM text in two parts " * 7, "@" * 159])
def test_a_concatenated_part_survives_text_mode(text: str) -> None:
    """SUBMIT part -> AT+CSMP fields and hex user data -> the SUBMIT a modem rebuilds."""
    for part in encode_submit("+4915112345678", text, concat_reference=9, status_report=True):
        fields = user_data(part.pdu)
        rebuilt = submit_from_user_data(
            "+4915112345678",
            first=fields.first,
            validity=167,
            protocol=fields.protocol,
            coding=fields.coding,
            data=fields.data,
        )
        original, again = decode(part.pdu), decode(rebuilt)
        assert again == original or (again.text, again.concat) == (original.text, original.concat)  # type: ignore[union-attr]


def test_septet_count_takes_seven_spare_bits_as_padding() -> None:
    assert septet_count(bytes(7)) == 7  # 8 septets would fit; the 8th is padding
    assert septet_count(b"\x41") == 1
    # The price: 160 '@' (140 octets) read as 159. A sender must avoid that shape.
    [part] = encode_submit("+4915112345678", "@" * 160)
    assert septet_count(user_data(part.pdu).data) == 159


@pytest.mark.parametrize("text", ["hello", "ж" * 30])
def test_deliver_from_text_fields(text: str) -> None:
    pdu = encode_deliver("+4930123456", text, timestamp=MOMENT, concat=Concat(3, 2, 1))
    fields = user_data(pdu)
    assert fields.first & UDHI
    message = deliver_from_text("+4930123456", MOMENT, fields)
    assert message == decode(pdu) or (message.text, message.concat) == (text, Concat(3, 2, 1))


def test_deliver_without_header_from_text() -> None:
    length, data = text_user_data("plain", 0)
    fields = user_data(encode_deliver("+4930123456", "x", timestamp=MOMENT))
    message = deliver_from_text(
        "+4930123456", MOMENT, type(fields)(fields.first, 0, 0, length, data)
    )
    assert message.text == "plain"
    assert message.sender == "+4930123456"


def test_report_from_text() -> None:
    report = report_from_text(17, "+4915112345678", MOMENT, MOMENT, 0)
    assert (report.message_reference, report.recipient, report.status) == (17, "+4915112345678", 0)
