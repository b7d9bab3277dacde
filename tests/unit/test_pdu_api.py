"""The names and signatures other services code against stay put."""

import dataclasses
import inspect
from collections.abc import Callable

import smsgate.pdu as pdu


def test_exported_names() -> None:
    assert set(pdu.__all__) == {
        "Alphabet",
        "Concat",
        "ReportState",
        "Deliver",
        "PduError",
        "Segmentation",
        "StatusReport",
        "Submit",
        "SubmitPart",
        "count_segments",
        "decode",
        "decode_deliver",
        "decode_status_report",
        "decode_submit",
        "encode_deliver",
        "encode_status_report",
        "encode_submit",
        "gsm7_encodable",
        "split_for_deliver",
        "tpdu_length",
    }
    assert all(hasattr(pdu, name) for name in pdu.__all__)


def test_enum_values() -> None:
    assert [a.value for a in pdu.Alphabet] == ["gsm7", "8bit", "ucs2"]
    assert [s.value for s in pdu.ReportState] == ["delivered", "pending", "failed"]


def _fields(cls: type) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


def test_dataclass_fields_start_with_the_agreed_ones() -> None:
    agreed = {
        pdu.Concat: ["reference", "total", "sequence", "wide"],
        pdu.SubmitPart: ["pdu", "tpdu_length", "concat", "text"],
        pdu.Segmentation: ["alphabet", "parts", "units", "per_part"],
        pdu.Deliver: [
            "smsc", "sender", "timestamp", "text", "alphabet", "concat", "protocol_id",
            "data_coding", "message_class", "port", "data", "status_report_indication",
            "more_messages",
        ],
        pdu.Submit: [
            "smsc", "number", "text", "alphabet", "concat", "message_reference",
            "status_report", "validity", "protocol_id", "data_coding", "data",
        ],
        pdu.StatusReport: [
            "smsc", "message_reference", "recipient", "timestamp", "discharge_time", "status",
            "state", "reason",
        ],
    }  # fmt: skip
    for cls, names in agreed.items():
        assert _fields(cls)[: len(names)] == names, cls.__name__
        params = dataclasses.fields(cls)[len(names) :]
        assert all(field.default is not dataclasses.MISSING for field in params), cls.__name__


def _keywords(function: Callable[..., object]) -> list[str]:
    signature = inspect.signature(function)
    return [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]


def test_keyword_arguments() -> None:
    assert _keywords(pdu.encode_submit)[:8] == [
        "smsc",
        "status_report",
        "message_reference",
        "validity",
        "concat_reference",
        "wide_reference",
        "alphabet",
        "message_class",
    ]
    assert _keywords(pdu.encode_deliver)[:5] == [
        "timestamp",
        "smsc",
        "concat",
        "alphabet",
        "status_report_indication",
    ]
    assert _keywords(pdu.encode_status_report) == [
        "timestamp",
        "discharge_time",
        "status",
        "smsc",
    ]
    for decoder in (pdu.decode, pdu.decode_deliver, pdu.decode_submit, pdu.decode_status_report):
        assert _keywords(decoder) == ["smsc_included"]
