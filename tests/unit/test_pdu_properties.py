"""Property tests: whatever text goes in comes back out, in the predicted number of parts."""

import contextlib
import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from smsgate.pdu import (
    Alphabet,
    Concat,
    Deliver,
    PduError,
    StatusReport,
    Submit,
    count_segments,
    decode,
    encode_deliver,
    encode_status_report,
    encode_submit,
    split_for_deliver,
)
from smsgate.pdu.validity import decode_relative, encode_relative

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"
EMOJI = "😀🎉👍🏽🇩🇪"

no_surrogates = st.characters(codec="utf-8")  # excludes lone surrogates
texts = st.one_of(
    st.text(st.sampled_from(GSM_BASIC + GSM_EXTENSION), max_size=800),
    st.text(st.sampled_from(GSM_BASIC + GSM_EXTENSION * 8), min_size=140, max_size=500),
    st.text(st.sampled_from(GSM_BASIC + EMOJI), max_size=300),
    st.text(no_surrogates, max_size=400),
    st.text(st.one_of(no_surrogates, st.sampled_from(EMOJI)), min_size=60, max_size=200),
)
numbers = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{5,14}", fullmatch=True),
    st.from_regex(r"0[0-9]{3,12}", fullmatch=True),
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz .-"), min_size=3, max_size=11).filter(
        lambda name: not name.isdigit()
    ),
)
zones = st.integers(-79, 79).map(lambda q: datetime.timezone(datetime.timedelta(minutes=15 * q)))
moments = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(datetime.datetime(2000, 1, 1), datetime.datetime(2099, 12, 31, 23, 59, 59)),
    zones,
).map(lambda moment: moment.replace(microsecond=0))


def _user_data_octets(tpdu: bytes) -> int:
    """TP-UD octets of an SMS-SUBMIT, located independently of the codec."""
    address_octets = (tpdu[2] + 1) // 2  # semi-octets, for digits and alphanumerics alike
    vp_octets = {0x00: 0, 0x10: 1, 0x08: 7, 0x18: 7}[tpdu[0] & 0x18]
    udl_at = 2 + 2 + address_octets + 2 + vp_octets
    return len(tpdu) - udl_at - 1


@settings(max_examples=300, deadline=None)
@given(
    text=texts,
    number=numbers,
    smsc=st.none() | st.just("+491710760000"),
    wide=st.booleans(),
    reference=st.integers(0, 255),
    validity=st.none() | st.timedeltas(datetime.timedelta(0), datetime.timedelta(weeks=70)),
)
def test_submit_round_trip(
    text: str,
    number: str,
    smsc: str | None,
    wide: bool,
    reference: int,
    validity: datetime.timedelta | None,
) -> None:
    segmentation = count_segments(text, wide_reference=wide)
    parts = encode_submit(
        number, text, smsc=smsc, concat_reference=reference, wide_reference=wide, validity=validity
    )
    assert len(parts) == segmentation.parts
    assert split_for_deliver(text, wide_reference=wide) == [part.text for part in parts]
    decoded = [decode(part.pdu) for part in parts]
    assert "".join(d.text for d in decoded if isinstance(d, Submit)) == text
    smsc_octets = 1 + (0 if smsc is None else 1 + (len(smsc) - 1 + 1) // 2)
    for sequence, (part, submit) in enumerate(zip(parts, decoded, strict=True), start=1):
        assert isinstance(submit, Submit)
        assert submit.text == part.text
        assert submit.number == number
        assert submit.smsc == smsc
        assert submit.alphabet is segmentation.alphabet
        assert part.tpdu_length == len(part.pdu) // 2 - smsc_octets
        assert _user_data_octets(bytes.fromhex(part.pdu)[smsc_octets:]) <= 140
        if len(parts) > 1:
            assert part.concat == Concat(reference, len(parts), sequence, wide)
            assert submit.concat == part.concat
        else:
            assert part.concat is None
            assert submit.concat is None
        units = count_segments(part.text, alphabet=segmentation.alphabet).units
        assert units <= segmentation.per_part


@settings(max_examples=200, deadline=None)
@given(text=texts, sender=numbers, moment=moments, reference=st.integers(0, 0xFFFF))
def test_deliver_round_trip(
    text: str, sender: str, moment: datetime.datetime, reference: int
) -> None:
    wide = reference > 0xFF
    pieces = split_for_deliver(text, wide_reference=wide)
    for sequence, piece in enumerate(pieces, start=1):
        concat = Concat(reference, len(pieces), sequence, wide) if len(pieces) > 1 else None
        deliver = decode(encode_deliver(sender, piece, timestamp=moment, concat=concat))
        assert isinstance(deliver, Deliver)
        assert (deliver.sender, deliver.text, deliver.concat) == (sender, piece, concat)
        assert deliver.timestamp == moment
        assert deliver.timestamp.utcoffset() == moment.utcoffset()


@settings(max_examples=200, deadline=None)
@given(text=texts, forced=st.sampled_from(list(Alphabet)))
def test_forced_alphabet_round_trips_or_refuses(text: str, forced: Alphabet) -> None:
    try:
        parts = encode_submit("+15551234567", text, alphabet=forced)
    except PduError:
        # Only refused when the text really has a character outside the forced alphabet.
        assert forced is not Alphabet.UCS2
        return
    assert len(parts) == count_segments(text, alphabet=forced).parts
    joined = "".join(d.text for d in map(decode, (p.pdu for p in parts)) if isinstance(d, Submit))
    assert joined == text


@settings(max_examples=200, deadline=None)
@given(
    reference=st.integers(0, 255),
    recipient=numbers,
    accepted=moments,
    discharged=moments,
    status=st.integers(0, 255),
)
def test_status_report_round_trip(
    reference: int,
    recipient: str,
    accepted: datetime.datetime,
    discharged: datetime.datetime,
    status: int,
) -> None:
    pdu = encode_status_report(
        reference, recipient, timestamp=accepted, discharge_time=discharged, status=status
    )
    report = decode(pdu)
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.recipient, report.status) == (
        reference,
        recipient,
        status,
    )
    assert (report.timestamp, report.discharge_time) == (accepted, discharged)
    assert report.reason.startswith(report.state.value)


@given(period=st.timedeltas(datetime.timedelta(0), datetime.timedelta(weeks=63)))
def test_relative_validity_never_shortens(period: datetime.timedelta) -> None:
    code = encode_relative(period)
    assert decode_relative(code) >= period
    assert code == 0 or decode_relative(code - 1) < period


@settings(max_examples=300, deadline=None)
@given(
    number=st.text(max_size=25),
    text=st.text(max_size=200),
    smsc=st.none() | st.text(max_size=15),
    reference=st.integers(-5, 70000),
    alphabet=st.none() | st.sampled_from(list(Alphabet)),
)
def test_encoders_refuse_only_with_pdu_error(
    number: str, text: str, smsc: str | None, reference: int, alphabet: Alphabet | None
) -> None:
    with contextlib.suppress(PduError):
        encode_submit(number, text, smsc=smsc, concat_reference=reference, alphabet=alphabet)
    moment = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    concat = Concat(reference, 2, 1, wide=reference > 0xFF)
    with contextlib.suppress(PduError):
        encode_deliver(number, text, timestamp=moment, smsc=smsc, concat=concat, alphabet=alphabet)
