"""Bad input of every kind fails with PduError and a message that says what is wrong."""

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from smsgate.pdu import (
    Alphabet,
    Concat,
    PduError,
    decode,
    decode_deliver,
    decode_status_report,
    decode_submit,
    encode_deliver,
    encode_status_report,
    encode_submit,
)

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
VECTORS: list[dict[str, Any]] = json.loads(
    (TESTDATA / "pdu_vectors.json").read_text(encoding="utf-8")
)
# Its TP-UDL (160 octets of UCS-2) exceeds the 140-octet maximum, so it is read as "what is
# there" (the source requires that) and its prefixes decode too.
BOGUS_UDL = "0041010C910661345542F60008A0"
NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
HELLO = "0001000B917228001011F100000CC8329BFD065DDF72363904"  # SMS-SUBMIT "Hello World!"


def test_pdu_error_is_a_value_error() -> None:
    assert issubclass(PduError, ValueError)


@pytest.mark.parametrize(
    ("pdu", "message"),
    [
        ("", "PDU is empty"),
        ("   ", "PDU is empty"),
        ("0", "odd number of digits"),
        ("0001000B9", "odd number of digits"),
        ("00G1", "non-hex character 'G'"),
        ("00 01", "non-hex character ' '"),
        ("0x01", "non-hex character 'x'"),
        ("07", "no octet left for SMSC type"),
        ("0791", "SMSC address needs 6 octet"),
        ("00", "no octet left for first octet"),
        ("0003", "TP-MTI 3 is reserved"),
        ("2404", "SMSC field length 36 is impossible .* smsc_included=False"),
        ("0001000B9172", "destination address needs 6 octet"),
        ("0001000B917228001011F1", "no octet left for TP-PID"),
        ("0001000B917228001011F10000", "no octet left for TP-UDL"),
        ("0001000B917228001011F100000CC8329BFD06", "12 septets of text need 11 octets, only 5"),
        ("0001000B917228001011F1000808006100", "8 octets of text announced, only 3"),
        ("0041000B917228001011F1000005", "TP-UDHI is set but there is no user data header"),
        ("0041000B917228001011F10000070500030102", "user data header of 5 octets, only 4"),
        ("0041000B917228001011F100000703000701", "element 00 claims 7 octets, only 1"),
        ("0041000B917228001011F100000202AA00", "TP-UDL of 2 septets is shorter"),
        ("0041000B917228001011F1000403050003010201", "TP-UDL of 3 octets is shorter"),
        ("0041000B917228001011F10004030100", "element at offset 0 has no length"),
        ("00040B917228001011F10000319980", "TP-SCTS needs 7 octet"),
        ("00040B917228001011F100003113800000000000", "not a valid date"),
        ("00040B917228001011F1000031A00100000000", "month octet A0 is not BCD"),
        ("0006D60B911326880736F41110117195514011101171957140", "no octet left for TP-ST"),
    ],
)
def test_bad_pdu(pdu: str, message: str) -> None:
    with pytest.raises(PduError, match=message):
        decode(pdu)


def test_not_a_hex_string() -> None:
    with pytest.raises(PduError, match="must be a hex string, not bytes"):
        decode(b"0001")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("decoder", "wanted"),
    [
        (decode_deliver, "SMS-DELIVER: TP-MTI is 1"),
        (decode_status_report, "SMS-STATUS-REPORT: TP-MTI is 1"),
    ],
)
def test_wrong_type_for_decoder(decoder: Any, wanted: str) -> None:
    with pytest.raises(PduError, match=f"not an {wanted}"):
        decoder(HELLO)


def test_submit_decoder_refuses_a_deliver() -> None:
    with pytest.raises(PduError, match="not an SMS-SUBMIT: TP-MTI is 0"):
        decode_submit("06917228195339040B917228214365F700003130805120618005D4F29C2E03")


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if not v["pdu"].startswith(BOGUS_UDL)],
    ids=lambda v: v["pdu"][:30],
)
def test_every_truncation_of_a_vector_is_refused(vector: dict[str, Any]) -> None:
    pdu = vector["pdu"]
    for end in range(0, len(pdu), 2):
        with pytest.raises(PduError):
            decode(pdu[:end])


def test_lenient_user_data_length_is_limited_to_impossible_values() -> None:
    # The same PDU with a plausible TP-UDL (20) is a truncated message, not a lenient read.
    plausible = "0041010C910661345542F6000814050003000301306F3044"
    with pytest.raises(PduError, match="14 octets of text announced, only 4 left"):
        decode(plausible)
    assert decode_submit(plausible.replace("000814", "0008A0")).text == "はい"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": ""}, "address is empty"),
        ({"number": "+"}, "'\\+' is not a phone number"),
        ({"number": "+49 170"}, "is not a phone number"),
        ({"number": "+" + "1" * 21}, "more than 20 digits"),
        ({"number": "TwelveChars!"}, "longer than 11 septets"),
        ({"number": "Привет"}, "is not GSM 7-bit text"),
        ({"smsc": "SMSC"}, "SMSC 'SMSC' is not a phone number"),
        ({"message_reference": 256}, "message reference 256 is outside 0-255"),
        ({"message_reference": -1}, "message reference -1 is outside 0-255"),
        ({"concat_reference": 256}, "concatenation reference 256 is outside 0-255"),
        ({"concat_reference": 65536, "wide_reference": True}, "outside 0-65535"),
        ({"text": "😀", "alphabet": Alphabet.GSM7}, "is not in the GSM 7-bit alphabet"),
        ({"text": "€", "alphabet": Alphabet.DATA8}, "cannot be sent as 8-bit data"),
        ({"text": "a\ud83d"}, "lone surrogate U\\+D83D"),
        ({"text": "a" * (153 * 255 + 1)}, "needs 256 parts; at most 255"),
        ({"validity": -datetime.timedelta(seconds=1)}, "validity period -1 day.* is negative"),
        ({"validity": datetime.datetime(2030, 1, 1)}, "must be timezone-aware"),
        ({"message_class": 4}, "message class must be 0-3"),
    ],
)
def test_bad_submit(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"number": "+15551234567", "text": "hi", **kwargs}
    with pytest.raises(PduError, match=message):
        encode_submit(**arguments)


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("a" * 161, {}, "needs 161 septets but only 160 fit"),
        ("a" * 154, {"concat": Concat(1, 2, 1)}, "needs 154 septets but only 153 fit"),
        ("a" * 153, {"concat": Concat(1, 2, 1, wide=True)}, "only 152 fit"),
        ("ж" * 71, {}, "needs 142 octets but only 140 fit"),
        ("ж" * 68, {"concat": Concat(1, 2, 1)}, "needs 136 octets but only 134 fit"),
        ("x", {"concat": Concat(1, 2, 3)}, "part 3 of 2 is impossible"),
        ("x", {"concat": Concat(300, 2, 1)}, "reference 300 is outside 0-255"),
        ("x", {"timestamp": datetime.datetime(2024, 1, 1)}, "must be timezone-aware"),
        ("x", {"timestamp": datetime.datetime(1999, 1, 1, tzinfo=datetime.UTC)}, "outside 2000"),
        (
            "x",
            {"timestamp": NOW.astimezone(datetime.timezone(datetime.timedelta(minutes=7)))},
            "not a whole number of quarter-hours",
        ),
        ("x", {"port": (70000, 1)}, "outside 0-65535"),
    ],
)
def test_bad_deliver(text: str, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"timestamp": NOW, **kwargs}
    with pytest.raises(PduError, match=message):
        encode_deliver("+15551234567", text, **arguments)


@pytest.mark.parametrize(
    ("reference", "status", "message"),
    [(256, 0, "message reference 256"), (1, 256, "status 256 is outside 0-255")],
)
def test_bad_status_report(reference: int, status: int, message: str) -> None:
    with pytest.raises(PduError, match=message):
        encode_status_report(reference, "+1555", timestamp=NOW, discharge_time=NOW, status=status)
