import pytest
from smsgate import subjects


def test_event_subjects_round_trip() -> None:
    subject = subjects.event("result", "hostb-lte-7")
    assert subject == "sms.event.result.hostb-lte-7"
    assert subjects.parse_event_subject(subject) == ("result", "hostb-lte-7")


def test_port_names_must_be_one_subject_token() -> None:
    with pytest.raises(ValueError, match="invalid port name"):
        subjects.send_port("lte.1")
    with pytest.raises(ValueError, match="unknown event kind"):
        subjects.event("sent", "lte-1")


@pytest.mark.parametrize(("name", "number"), [("lte-7", 7), ("hostb-lte-12", 12), ("modem", None)])
def test_port_number_from_trailing_digits(name: str, number: int | None) -> None:
    assert subjects.port_number(name) == number


def test_event_filter() -> None:
    assert subjects.event_filter() == "sms.event.*.*"
    assert subjects.event_filter("inbound") == "sms.event.inbound.*"
    assert subjects.event_filter(port="lte-1") == "sms.event.*.lte-1"


def test_message_keys_are_valid_kv_keys() -> None:
    assert subjects.message_key("edeb7540") == "edeb7540"
    assert subjects.message_key("a b") == "x-" + b"a b".hex()
    assert subjects.message_key("x-61") != "x-61"  # an id never collides with an encoded one
