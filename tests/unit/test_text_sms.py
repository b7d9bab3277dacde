"""Text-mode SMS on the agent's side: commands for each part, parsing what comes back."""

from __future__ import annotations

import pytest
from smsgate.pdu import Concat, Deliver, StatusReport, decode, encode_submit
from smsgate_agent.text_sms import (
    ambiguous,
    from_ucs2,
    listed_indexes,
    read_direct,
    read_stored,
    text_parts,
    ucs2,
)

NUMBER = "+4915112345678"
SENDER_HEX = ucs2("+4930123456")


def test_numbers_and_text_in_ucs2() -> None:
    assert from_ucs2(f'"{SENDER_HEX}"') == "+4930123456"
    assert from_ucs2('"12345678"') == "12345678"  # hex-looking digits stay digits
    assert from_ucs2("Vodafone") == "Vodafone"


def test_a_short_message_goes_as_text() -> None:
    [part] = text_parts(NUMBER, encode_submit(NUMBER, "hi there", status_report=True))
    assert part.csmp == "AT+CSMP=33,167,0,0"  # SMS-SUBMIT with TP-SRR (0x20), no TP-VP
    assert part.command == f'AT+CMGS="{ucs2(NUMBER)}",145'
    assert part.payload == ucs2("hi there")


def test_a_long_message_goes_as_user_data_with_udhi() -> None:
    parts = text_parts(NUMBER, encode_submit(NUMBER, "x" * 200, concat_reference=5))
    assert [p.sequence for p in parts] == [1, 2]
    assert all(int(p.csmp.split("=")[1].split(",")[0]) & 0x40 for p in parts)
    assert parts[0].payload.startswith("050003050201")  # the concatenation header


def test_an_ambiguous_gsm7_part_is_recognised() -> None:
    first, _ = encode_submit(NUMBER, "a" * 152 + "@" + "b" * 10, concat_reference=1)
    assert ambiguous(first)
    plain, _ = encode_submit(NUMBER, "a" * 163, concat_reference=1)
    assert not ambiguous(plain)


def test_stored_message_with_header_details() -> None:
    header = f'"REC UNREAD","{SENDER_HEX}",,"26/12/03,09:05:07+32",145,68,0,8,"+15550000000",145,12'
    data = "0500030A0201" + "0436" * 3
    message = read_stored(header, data)
    assert isinstance(message, Deliver)
    assert (message.sender, message.text, message.concat) == (
        "+4930123456",
        "жжж",
        Concat(10, 2, 1),
    )


def test_stored_plain_text_and_report() -> None:
    header = f'"REC READ","{SENDER_HEX}",,"26/12/03,09:05:07+32",145,4,0,0,"+1555",145,5'
    message = read_stored(header, ucs2("hello"))
    assert isinstance(message, Deliver)
    assert message.text == "hello"
    report = read_stored(
        f'"REC UNREAD",6,17,"{ucs2(NUMBER)}",145,"26/12/03,09:05:07+32","26/12/03,09:05:09+32",0',
        None,
    )
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.recipient, report.status) == (17, NUMBER, 0)
    assert read_stored('"STO UNSENT","123",,', "abc") is None


def test_direct_forms() -> None:
    header = f'"{SENDER_HEX}",,"26/12/03,09:05:07+32",145,4,0,0,"+1555",145,2'
    message = read_direct("+CMT", header, ucs2("ok"))
    assert isinstance(message, Deliver)
    assert message.text == "ok"
    report = read_direct(
        "+CDS", '6,3,"+4915112345678",145,"26/12/03,09:05:07+32","26/12/03,09:05:08+32",0', None
    )
    assert isinstance(report, StatusReport)
    assert report.message_reference == 3


def test_listing_gives_indexes() -> None:
    assert listed_indexes(
        ['0,"REC UNREAD","0031",,"26/12/03,09:05:07+32",145,4', '3,"REC READ",6,1']
    ) == [0, 3]


@pytest.mark.parametrize("text", ["ж" * 70, "plain"])
def test_sent_parts_rebuild_to_what_was_encoded(text: str) -> None:
    parts = encode_submit(NUMBER, text)
    for encoded, sent in zip(parts, text_parts(NUMBER, parts), strict=True):
        assert decode(encoded.pdu).text == text
        assert sent.payload in (ucs2(text),)
