"""Codec behaviour beyond the shared vectors: framing, options, DCS groups and odd inputs."""

import datetime

import pytest
from smsgate.pdu import (
    Alphabet,
    Concat,
    Deliver,
    Submit,
    decode,
    decode_deliver,
    decode_submit,
    encode_deliver,
    encode_submit,
    gsm7_encodable,
    tpdu_length,
)
from smsgate.pdu.dcs import DataCoding, parse_dcs

UTC = datetime.UTC
NOW = datetime.datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
TEST2 = "06917228195339040B917228214365F700003130805120618005D4F29C2E03"


def test_smsc_field_framing() -> None:
    tpdu = TEST2[14:]
    with_empty_smsc = decode_deliver("00" + tpdu)
    without_smsc = decode_deliver(tpdu, smsc_included=False)
    assert with_empty_smsc.smsc is None
    assert without_smsc == with_empty_smsc
    assert decode_deliver(TEST2).smsc == "+2782913593"
    assert tpdu_length(TEST2) == tpdu_length(tpdu, smsc_included=False) == len(tpdu) // 2


def test_hex_case_and_surrounding_whitespace() -> None:
    assert decode(f"  {TEST2.lower()}\r\n") == decode(TEST2)


def test_submit_options_reach_the_first_octet() -> None:
    [part] = encode_submit(
        "+15551234567",
        "hi",
        status_report=True,
        reject_duplicates=True,
        message_reference=200,
        validity=datetime.timedelta(days=1),
        message_class=0,
    )
    tpdu = bytes.fromhex(part.pdu)[1:]
    assert tpdu[0] == 0x01 | 0x04 | 0x10 | 0x20
    submit = decode_submit(part.pdu)
    assert submit.status_report
    assert submit.reject_duplicates
    assert submit.message_reference == 200
    assert submit.validity == datetime.timedelta(days=1)
    assert (submit.data_coding, submit.message_class) == (0x10, 0)


def test_absolute_validity() -> None:
    until = datetime.datetime(
        2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(-datetime.timedelta(hours=5))
    )
    [part] = encode_submit("+15551234567", "hi", validity=until)
    submit = decode_submit(part.pdu)
    assert submit.validity == until
    assert bytes.fromhex(part.pdu)[1] & 0x18 == 0x18


def test_enhanced_validity_is_read() -> None:
    # VPF 01: functionality octet 0x02 = relative in seconds, then 45 s, padded to 7 octets.
    pdu = "0009000B917228001011F10000" + "022D0000000000" + "05C8329BFD06"
    submit = decode_submit(pdu)
    assert submit.validity == datetime.timedelta(seconds=45)
    assert submit.text == "Hello"


def test_alphanumeric_destination_and_sender() -> None:
    [part] = encode_submit("Info", "hi")
    assert decode_submit(part.pdu).number == "Info"
    deliver = decode_deliver(encode_deliver("MyBank €", "code 1234", timestamp=NOW))
    assert deliver.sender == "MyBank €"


def test_empty_text_with_header_takes_no_text_octet() -> None:
    pdu = encode_deliver("+1555", "", timestamp=NOW, concat=Concat(1, 2, 2))
    assert pdu.endswith("07050003010202")
    deliver = decode_deliver(pdu)
    assert (deliver.text, deliver.concat) == ("", Concat(1, 2, 2))


def test_application_ports_and_8bit_data() -> None:
    pdu = encode_deliver(
        "+1555", "\x01\x02\xff", timestamp=NOW, alphabet=Alphabet.DATA8, port=(2948, 9200)
    )
    deliver = decode_deliver(pdu)
    assert deliver.port == (2948, 9200)
    assert deliver.data == b"\x01\x02\xff"
    assert deliver.alphabet is Alphabet.DATA8


def test_unknown_information_elements_are_skipped() -> None:
    # UDH: IE 0x24 (national language), IE 0x70 (unknown, 3 octets), 8-bit concat 5/2/1.
    udh = "0D" + "240101" + "7003AABBCC" + "0003050201"
    ud = udh + "00480069"
    pdu = "0040" + "0491515500" + "08" + "42105021000000" + f"{len(ud) // 2:02X}" + ud
    deliver = decode_deliver(pdu)
    assert deliver.concat == Concat(5, 2, 1)
    assert deliver.text == "Hi"


def test_received_lone_surrogate_becomes_replacement_character() -> None:
    pdu = "000404915155000842105021000000" + "04" + "D800003D"
    deliver = decode_deliver(pdu)
    assert deliver.text == "\ufffd="
    assert deliver.data == bytes.fromhex("D800003D")


def test_dangling_ucs2_octet_is_dropped() -> None:
    deliver = decode_deliver("000404915155000842105021000000030048FF")
    assert deliver.text == "H"


def test_emoji_and_flags_survive_a_submit() -> None:
    text = "Grüße 👍🏽 🇩🇪 " * 10
    parts = encode_submit("+491701234567", text)
    decoded = [decode(part.pdu) for part in parts]
    assert "".join(m.text for m in decoded if isinstance(m, Submit)) == text
    assert all(isinstance(m, Submit) and m.alphabet is Alphabet.UCS2 for m in decoded)


@pytest.mark.parametrize(
    ("dcs", "coding"),
    [
        (0x00, DataCoding(Alphabet.GSM7, None)),
        (0x04, DataCoding(Alphabet.DATA8, None)),
        (0x08, DataCoding(Alphabet.UCS2, None)),
        (0x0C, DataCoding(Alphabet.GSM7, None)),  # reserved alphabet reads as GSM 7-bit
        (0x10, DataCoding(Alphabet.GSM7, 0)),
        (0x19, DataCoding(Alphabet.UCS2, 1)),
        (0x16, DataCoding(Alphabet.DATA8, 2)),
        (0x03, DataCoding(Alphabet.GSM7, None)),  # class bits without bit 4 mean nothing
        (0x24, DataCoding(Alphabet.DATA8, None, compressed=True)),
        (0x48, DataCoding(Alphabet.UCS2, None)),  # marked for automatic deletion
        (0x80, DataCoding(Alphabet.GSM7, None)),  # reserved group
        (0xC8, DataCoding(Alphabet.GSM7, None)),  # message waiting, discard
        (0xD0, DataCoding(Alphabet.GSM7, None)),  # message waiting, store
        (0xE0, DataCoding(Alphabet.UCS2, None)),  # message waiting, store, UCS-2
        (0xF0, DataCoding(Alphabet.GSM7, 0)),
        (0xF5, DataCoding(Alphabet.DATA8, 1)),
        (0xF2, DataCoding(Alphabet.GSM7, 2)),
    ],
)
def test_data_coding_groups(dcs: int, coding: DataCoding) -> None:
    assert parse_dcs(dcs) == coding


def test_class_0_flash_deliver() -> None:
    pdu = "000404915155001042105021000000" + "02" + "E834"
    deliver = decode(pdu)
    assert isinstance(deliver, Deliver)
    assert (deliver.message_class, deliver.text) == (0, "hi")


def test_gsm7_encodable() -> None:
    assert gsm7_encodable("Hello @ £ € {x} ^ ~ | \\ [ ] \f \n\r")
    assert not gsm7_encodable("Hello `backtick`")
    assert not gsm7_encodable("😀")
    assert gsm7_encodable("")
