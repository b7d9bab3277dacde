"""The shared component vectors: GSM 7-bit packing, UDH elements, TP-VP, SCTS and addresses."""

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from smsgate.pdu import gsm7
from smsgate.pdu.address import encode_address, encode_smsc, read_address, read_smsc
from smsgate.pdu.octets import Reader
from smsgate.pdu.timestamp import decode_timestamp, encode_timestamp
from smsgate.pdu.udh import Concat, decode_udh, encode_udh
from smsgate.pdu.validity import decode_relative, encode_relative

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
COMPONENTS: list[dict[str, Any]] = json.loads(
    (TESTDATA / "pdu_component_vectors.json").read_text(encoding="utf-8")
)


def _of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [vector for vector in COMPONENTS if vector["kind"] in kinds]


def test_every_component_vector_is_covered() -> None:
    covered = _of_kind("gsm7_packed", "udh_ie", "udh", "relative_vp", "scts", "address")
    assert len(covered) + len(_of_kind("smsc_address")) == len(COMPONENTS)


@pytest.mark.parametrize("vector", _of_kind("gsm7_packed"), ids=lambda v: repr(v["text"]))
def test_gsm7_packing(vector: dict[str, Any]) -> None:
    septets = gsm7.encode_septets(vector["text"])
    cr_pad = "CR padding" in vector.get("notes", "")
    packed = bytes.fromhex(vector["packed_hex"])
    assert gsm7.pack(septets, cr_pad=cr_pad) == packed
    assert gsm7.decode_septets(gsm7.unpack(packed, len(septets))) == vector["text"]
    if cr_pad:
        # Unpacked without knowing the length, the padding shows up as a trailing CR.
        everything = gsm7.unpack(packed, len(packed) * 8 // 7)
        assert gsm7.decode_septets(everything) == vector["text"] + "\r"


def _expected_header(vector: dict[str, Any]) -> tuple[Concat | None, tuple[int, int] | None]:
    concat = None
    if "seq" in vector:
        reference: int = vector["ref"] if "ref" in vector else vector["concat_ref"]
        wide = vector.get("iei") == 8 or reference > 0xFF
        concat = Concat(reference, vector["parts"], vector["seq"], wide)
    port = (vector["dest_port"], vector["orig_port"]) if "dest_port" in vector else None
    return concat, port


@pytest.mark.parametrize("vector", _of_kind("udh_ie", "udh"), ids=lambda v: v["hex"])
def test_user_data_header(vector: dict[str, Any]) -> None:
    body = bytes.fromhex(vector["hex"])
    concat, port = _expected_header(vector)
    header = decode_udh(body)
    assert (header.concat, header.port) == (concat, port)
    if "iei" in vector:
        assert [iei for iei, _ in header.elements] == [vector["iei"]]
    assert encode_udh(concat, port) == bytes([len(body)]) + body


@pytest.mark.parametrize("vector", _of_kind("relative_vp"), ids=lambda v: str(v["tp_vp"]))
def test_relative_validity(vector: dict[str, Any]) -> None:
    units = {k: vector[k] for k in ("minutes", "hours", "days", "weeks") if k in vector}
    period = datetime.timedelta(**units)
    assert encode_relative(period) == vector["tp_vp"]
    assert decode_relative(vector["tp_vp"]) == period


@pytest.mark.parametrize(
    ("period", "code"),
    [
        (datetime.timedelta(0), 0),
        (datetime.timedelta(minutes=6), 1),  # rounded up, never shortened
        (datetime.timedelta(hours=12), 143),
        (datetime.timedelta(hours=24), 167),
        (datetime.timedelta(days=2), 168),
        (datetime.timedelta(days=30), 196),
        (datetime.timedelta(days=31), 197),
        (datetime.timedelta(weeks=63), 255),
        (datetime.timedelta(weeks=500), 255),
    ],
)
def test_relative_validity_boundaries(period: datetime.timedelta, code: int) -> None:
    assert encode_relative(period) == code


@pytest.mark.parametrize("vector", _of_kind("scts"), ids=lambda v: v["iso"])
def test_timestamp(vector: dict[str, Any]) -> None:
    moment = datetime.datetime.fromisoformat(vector["iso"])
    raw = bytes.fromhex(vector["hex"])
    assert encode_timestamp(moment) == raw
    decoded = decode_timestamp(raw)
    assert decoded == moment
    assert decoded.utcoffset() == moment.utcoffset()


def test_timestamp_quarter_hour_zones() -> None:
    nepal = datetime.timezone(datetime.timedelta(hours=5, minutes=45))
    moment = datetime.datetime(2024, 2, 29, 23, 59, 59, tzinfo=nepal)
    assert decode_timestamp(encode_timestamp(moment)).utcoffset() == nepal.utcoffset(None)


@pytest.mark.parametrize("vector", _of_kind("address"), ids=lambda v: v["text"])
def test_address(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    reader = Reader(raw)
    assert read_address(reader, "address") == vector["text"]
    assert reader.remaining == 0
    # We choose TOA 0x91/0x81/0xD0 ourselves; the vector's own TOA must reproduce its bytes.
    assert encode_address(vector["text"], toa=raw[1]) == raw


def test_address_default_types() -> None:
    assert encode_address("+27829135934")[1] == 0x91
    assert encode_address("0129998765")[1] == 0x81
    assert encode_address("FRANCOIS")[1] == 0xD0


@pytest.mark.parametrize("vector", _of_kind("smsc_address"), ids=lambda v: v["text"])
def test_smsc_address(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    assert encode_smsc(vector["text"]) == raw
    assert read_smsc(Reader(raw)) == vector["text"]


def test_empty_smsc_field() -> None:
    assert encode_smsc(None) == b"\x00"
    assert read_smsc(Reader(b"\x00")) is None


def test_gsm7_extension_and_unknown_escapes() -> None:
    assert gsm7.decode_septets([0x1B, 0x65]) == "€"
    # 23.038: an escape to a code the extension table lacks shows the basic character.
    assert gsm7.decode_septets([0x1B, 0x41]) == "A"
    assert gsm7.decode_septets([0x41, 0x1B]) == "A "
    assert gsm7.encode_septets("\f^{}\\[~]|€") == [
        *(0x1B, 0x0A),
        *(0x1B, 0x14),
        *(0x1B, 0x28),
        *(0x1B, 0x29),
        *(0x1B, 0x2F),
        *(0x1B, 0x3C),
        *(0x1B, 0x3D),
        *(0x1B, 0x3E),
        *(0x1B, 0x40),
        *(0x1B, 0x65),
    ]


def test_gsm7_table_round_trips() -> None:
    every = [code for code in range(128) if code != 0x1B]
    text = gsm7.decode_septets(every)
    assert len(text) == 127
    assert gsm7.encode_septets(text) == every
    assert gsm7.gsm7_encodable(text)
    assert not gsm7.gsm7_encodable("ç")  # only Ç is in the table; no silent lookalikes
