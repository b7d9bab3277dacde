"""The AT response parser, fed byte transcripts of real modem behaviour (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smsgate_agent.at_parser import (
    MAX_LINE,
    AtParser,
    Event,
    Final,
    Line,
    PendingCommand,
    Prompt,
    Reply,
    Settled,
    Status,
    Stray,
    Urc,
    parse_final,
    split_fields,
)

PDU_27 = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
SR_PDU = "07911326040000F006450B911346610089F6012101311340000121013113400000"


def parse(data: bytes, command: str | PendingCommand | None = None) -> list[Event]:
    parser = AtParser()
    if command is not None:
        parser.begin(command if isinstance(command, PendingCommand) else PendingCommand.of(command))
    return parser.feed(data)


def parse_chunks(chunks: list[bytes], command: str | PendingCommand | None = None) -> list[Event]:
    parser = AtParser()
    if command is not None:
        parser.begin(command if isinstance(command, PendingCommand) else PendingCommand.of(command))
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def assert_any_split(
    data: bytes, command: str | PendingCommand | None, expected: list[Event]
) -> None:
    """The same events whether the bytes come at once, in two pieces, or one by one."""
    assert parse(data, command) == expected
    for cut in range(1, len(data)):
        assert parse_chunks([data[:cut], data[cut:]], command) == expected, f"split at {cut}"
    assert parse_chunks([bytes([b]) for b in data], command) == expected


def ok(*lines: str | Line) -> Final:
    return Final(
        Reply(Status.OK, tuple(x if isinstance(x, Line) else Line(x) for x in lines), final="OK")
    )


# --- final result codes ------------------------------------------------------------------


def test_plain_ok() -> None:
    assert_any_split(b"\r\nOK\r\n", "AT", [ok()])


def test_echo_on_is_dropped() -> None:
    data = b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CSQ", [ok("+CSQ: 20,99")])


def test_echo_off_bare_lines_are_the_reply() -> None:
    assert_any_split(b"\r\n234150123456789\r\n\r\nOK\r\n", "AT+CIMI", [ok("234150123456789")])


@pytest.mark.parametrize(
    ("final", "status", "code"),
    [
        (b"ERROR", Status.ERROR, None),
        (b"+CMS ERROR: 38", Status.CMS_ERROR, 38),
        (b"+CMS ERROR: 500", Status.CMS_ERROR, 500),
        (b"+CMS ERROR: Unknown error", Status.CMS_ERROR, 500),
        (b"+CMS ERROR: network timeout", Status.CMS_ERROR, 332),
        (b"+CME ERROR: 14", Status.CME_ERROR, 14),
        (b"+CME ERROR: SIM busy", Status.CME_ERROR, 14),
        (b"+CME ERROR: SIM not inserted", Status.CME_ERROR, 10),
        (b"+CME ERROR: 515", Status.CME_ERROR, 515),
        (b"+CME ERROR: something new", Status.CME_ERROR, None),
        (b"NO CARRIER", Status.NO_CARRIER, None),
        (b"BUSY", Status.BUSY, None),
        (b"COMMAND NOT SUPPORT", Status.NOT_SUPPORTED, None),
        (b"TOO MANY PARAMETERS", Status.NOT_SUPPORTED, None),
    ],
)
def test_final_result_codes(final: bytes, status: Status, code: int | None) -> None:
    events = parse(b"\r\n" + final + b"\r\n", "AT+CMGF=0")
    assert events == [Final(Reply(status, (), code, final.decode()))]


def test_huawei_command_not_support() -> None:
    data = b"\r\nCOMMAND NOT SUPPORT\r\n"
    events = parse(data, "AT+CMMS=2")
    assert len(events) == 1
    assert isinstance(events[0], Final)
    assert events[0].reply.status is Status.NOT_SUPPORTED
    assert not events[0].reply.ok


def test_parse_final_ignores_ordinary_lines() -> None:
    assert parse_final("+CSQ: 20,99") is None
    assert parse_final("OKAY") is None
    assert parse_final("ok") is not None


# --- replies that end without OK --------------------------------------------------------


def test_wavecom_cpin_without_ok_settles() -> None:
    command = PendingCommand.of("AT+CPIN?", complete_on="+CPIN")
    parser = AtParser()
    parser.begin(command)
    events = parser.feed(b"\r\n+CPIN: READY\r\n")
    assert events == [Settled(Reply(Status.OK, (Line("+CPIN: READY"),), final=""))]
    assert parser.busy  # an OK may still trail it
    assert parser.settle().first("+CPIN") == "READY"
    assert not parser.busy
    # ...and an OK that comes after all is a stray, not the next command's answer
    assert parser.feed(b"\r\nOK\r\n") == [Stray("OK")]


def test_cpin_with_ok_settles_then_finishes() -> None:
    command = PendingCommand.of("AT+CPIN?", complete_on="+CPIN")
    data = b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    settled = Settled(Reply(Status.OK, (Line("+CPIN: SIM PIN"),), final=""))
    assert_any_split(data, command, [settled, ok("+CPIN: SIM PIN")])


# --- the send prompt ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [b"> ", b">", b">\r\n", b"> \r\n"])
def test_prompt_forms(prompt: bytes) -> None:
    data = b"\r\n" + prompt + b"\r\n+CMGS: 12\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CMGS=23", [Prompt(), ok("+CMGS: 12")])


def test_prompt_alone_is_reported_before_the_pdu_is_written() -> None:
    # A modem prints "> " and then waits: no terminator ever follows until we write.
    assert parse(b"\r\n> ", "AT+CMGS=23") == [Prompt()]
    assert parse(b"\r\n>", "AT+CMGS=23") == [Prompt()]


def test_prompt_with_echo_on() -> None:
    pdu = b"0011000B915121551532F40000AA0AE8329BFD4697D9EC37"
    data = b"AT+CMGS=23\r\r\n> " + pdu + b"\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CMGS=23", [Prompt(), ok("+CMGS: 7")])


def test_refused_before_the_prompt() -> None:
    data = b"\r\n+CMS ERROR: 304\r\n"
    assert parse(data, "AT+CMGS=23") == [Final(Reply(Status.CMS_ERROR, (), 304, "+CMS ERROR: 304"))]


def test_greater_than_is_not_a_prompt_when_none_is_expected() -> None:
    assert parse(b"\r\n> \r\nOK\r\n", "AT") == [ok(">")]
    assert parse(b"\r\n>x\r\nOK\r\n", "AT+CMGS=23") == [ok(">x")]


def test_urc_between_prompt_and_cmgs_is_routed() -> None:
    data = b'\r\n> \r\n+CMTI: "SM",3\r\n\r\n+CMGS: 12\r\n\r\nOK\r\n'
    assert_any_split(data, "AT+CMGS=23", [Prompt(), Urc("+CMTI", '+CMTI: "SM",3'), ok("+CMGS: 12")])


def test_zte_urcs_before_prompt_and_before_cmgs() -> None:
    data = (
        b'\r\n+ZPASR: "UMTS"\r\n'
        b"\r\n> "
        b'\r\n+ZDONR: "01","001","01","CS_PS","ROAM_OFF"\r\n'
        b"\r\n+CMGS: 200\r\n\r\nOK\r\n"
    )
    assert_any_split(
        data,
        "AT+CMGS=31",
        [
            Urc("+ZPASR", '+ZPASR: "UMTS"'),
            Prompt(),
            Urc("+ZDONR", '+ZDONR: "01","001","01","CS_PS","ROAM_OFF"'),
            ok("+CMGS: 200"),
        ],
    )


def test_two_line_urc_between_prompt_and_cmgs() -> None:
    data = b"\r\n> \r\n+CMT: ,27\r\n" + PDU_27.encode() + b"\r\n+CMGS: 5\r\n\r\nOK\r\n"
    assert_any_split(
        data, "AT+CMGS=23", [Prompt(), Urc("+CMT", "+CMT: ,27", PDU_27), ok("+CMGS: 5")]
    )


def test_ok_without_cmgs() -> None:
    assert_any_split(b"\r\n> \r\nOK\r\n", "AT+CMGS=23", [Prompt(), ok()])


# --- URC routing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (b'+CMTI: "SM",3', "+CMTI"),
        (b'+CDSI: "SR",1', "+CDSI"),
        (b"^RSSI: 17", "^RSSI"),
        (b"^BOOT: 20952548,0,0,0,72", "^BOOT"),
        (b'+QIND: "csq",15,99', "+QIND"),
        (b"RING", "RING"),
        (b"+ZDONR: 1", "+ZDONR"),
        (b'+ZPASR: "LTE"', "+ZPASR"),
        (b"+CREG: 1", "+CREG"),
        (b"NO CARRIER", "NO CARRIER"),
        (b"+CPIN: NOT READY", "+CPIN"),
        (b"SMS Ready", "SMS READY"),
    ],
)
def test_urcs_while_idle(line: bytes, name: str) -> None:
    assert_any_split(b"\r\n" + line + b"\r\n", None, [Urc(name, line.decode())])


@pytest.mark.parametrize(
    "line",
    [b'+CMTI: "SM",3', b"^RSSI: 17", b"RING", b"+ZDONR: 1", b"^BOOT: 1,0,0,0,72", b"+QIND: x"],
)
def test_urcs_never_enter_a_reply(line: bytes) -> None:
    data = b"\r\n+CSQ: 20,99\r\n\r\n" + line + b"\r\n\r\nOK\r\n"
    urc = parse(b"\r\n" + line + b"\r\n")[0]
    assert_any_split(data, "AT+CSQ", [urc, ok("+CSQ: 20,99")])


def test_cmt_two_line_urc_idle_and_in_a_command() -> None:
    urc = Urc("+CMT", "+CMT: ,27", PDU_27)
    assert_any_split(b"\r\n+CMT: ,27\r\n" + PDU_27.encode() + b"\r\n", None, [urc])
    data = b"\r\n+CMT: ,27\r\n" + PDU_27.encode() + b"\r\n\r\n+CSQ: 9,0\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CSQ", [urc, ok("+CSQ: 9,0")])


def test_cmt_with_alpha_field() -> None:
    data = b'\r\n+CMT: "Mum",27\r\n' + PDU_27.lower().encode() + b"\r\n"
    assert parse(data) == [Urc("+CMT", '+CMT: "Mum",27', PDU_27)]


def test_cds_two_line_urc() -> None:
    urc = Urc("+CDS", "+CDS: 25", SR_PDU)
    assert_any_split(b"\r\n+CDS: 25\r\n" + SR_PDU.encode() + b"\r\n", None, [urc])


def test_urc_inside_a_two_line_urc() -> None:
    data = b"\r\n+CDS: 25\r\n^RSSI: 12\r\n" + SR_PDU.encode() + b"\r\n"
    assert_any_split(data, None, [Urc("^RSSI", "^RSSI: 12"), Urc("+CDS", "+CDS: 25", SR_PDU)])


def test_two_line_urc_missing_its_pdu_is_not_lost() -> None:
    data = b"\r\n+CMT: ,27\r\n\r\nOK\r\n"
    assert parse(data, "AT") == [Urc("+CMT", "+CMT: ,27"), ok()]


# --- registration: reply or URC? ---------------------------------------------------------


def test_creg_reply_and_urc_told_apart() -> None:
    data = b"\r\n+CREG: 1\r\n\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CREG?", [Urc("+CREG", "+CREG: 1"), ok("+CREG: 0,1")])


def test_creg_long_forms() -> None:
    data = b'\r\n+CREG: 5,"00C3","A1B2",7\r\n+CREG: 2,1,"00C3","0000A1B2",7\r\n\r\nOK\r\n'
    assert_any_split(
        data,
        "AT+CREG?",
        [Urc("+CREG", '+CREG: 5,"00C3","A1B2",7'), ok('+CREG: 2,1,"00C3","0000A1B2",7')],
    )


def test_cereg_urc_with_empty_fields() -> None:
    data = b"\r\n+CEREG: 1,,,7\r\n\r\n+CEREG: 0,5\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CEREG?", [Urc("+CEREG", "+CEREG: 1,,,7"), ok("+CEREG: 0,5")])


def test_creg_while_another_command_is_pending_is_a_urc() -> None:
    data = b"\r\n+CREG: 0,1\r\n\r\n+CSQ: 9,0\r\n\r\nOK\r\n"
    assert parse(data, "AT+CSQ") == [Urc("+CREG", "+CREG: 0,1"), ok("+CSQ: 9,0")]


# --- reading messages --------------------------------------------------------------------


def test_cmgr_with_missing_stat() -> None:
    data = b"\r\n+CMGR: ,,27\r\n" + PDU_27.encode() + b"\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CMGR=1", [ok(Line("+CMGR: ,,27", PDU_27))])


def test_rssi_inside_a_cmgr_reply() -> None:
    expected_reply = ok(Line("+CMGR: 0,,27", PDU_27))
    before_pdu = b"\r\n+CMGR: 0,,27\r\n^RSSI: 15\r\n" + PDU_27.encode() + b"\r\n\r\nOK\r\n"
    assert_any_split(before_pdu, "AT+CMGR=1", [Urc("^RSSI", "^RSSI: 15"), expected_reply])
    after_pdu = b"\r\n+CMGR: 0,,27\r\n" + PDU_27.encode() + b"\r\n^RSSI: 15\r\n\r\nOK\r\n"
    assert_any_split(after_pdu, "AT+CMGR=1", [Urc("^RSSI", "^RSSI: 15"), expected_reply])


def test_empty_cmgr() -> None:
    assert parse(b"\r\n+CMGR: 0,,0\r\n\r\nOK\r\n", "AT+CMGR=4") == [ok("+CMGR: 0,,0")]


def test_cmgl_list_with_urcs_between_entries() -> None:
    data = (
        b"\r\n+CMGL: 1,1,,27\r\n" + PDU_27.encode() + b"\r\n"
        b'+CMTI: "SM",3\r\n'
        b"+CMGL: 2,0,,25\r\n" + SR_PDU.encode() + b"\r\n"
        b"\r\nOK\r\n"
    )
    assert_any_split(
        data,
        "AT+CMGL=4",
        [
            Urc("+CMTI", '+CMTI: "SM",3'),
            ok(Line("+CMGL: 1,1,,27", PDU_27), Line("+CMGL: 2,0,,25", SR_PDU)),
        ],
    )


def test_cmt_urc_during_cmgl_keeps_both_pdus_apart() -> None:
    data = (
        b"\r\n+CMGL: 1,1,,27\r\n" + PDU_27.encode() + b"\r\n"
        b"+CMT: ,25\r\n" + SR_PDU.encode() + b"\r\n"
        b"\r\nOK\r\n"
    )
    assert_any_split(
        data,
        "AT+CMGL=4",
        [Urc("+CMT", "+CMT: ,25", SR_PDU), ok(Line("+CMGL: 1,1,,27", PDU_27))],
    )


# --- junk, strays, limits ----------------------------------------------------------------


def test_garbage_before_a_reply() -> None:
    data = b"\x00\xff\xfe\x13\r\n\xa5\xa5OK\r\n"
    assert_any_split(data, "AT", [ok()])


def test_garbage_while_idle_is_stray() -> None:
    events = parse(b"\x00\xffxq#!\r\n")
    assert len(events) == 1
    assert isinstance(events[0], Stray)


def test_late_ok_is_a_stray() -> None:
    assert parse(b"\r\nOK\r\n") == [Stray("OK")]


def test_endless_line_is_dropped() -> None:
    parser = AtParser()
    parser.begin(PendingCommand.of("AT"))
    events = parser.feed(b"x" * (MAX_LINE + 1))
    assert len(events) == 1
    assert isinstance(events[0], Stray)
    assert parser.feed(b"\r\nOK\r\n") == [ok()]


def test_abandon_makes_late_answers_stray() -> None:
    parser = AtParser()
    parser.begin(PendingCommand.of("AT+CSQ"))
    assert parser.feed(b"\r\n+CSQ: 1,2\r\n") == []
    parser.abandon()
    assert parser.feed(b"\r\nOK\r\n") == [Stray("OK")]


# --- helpers -----------------------------------------------------------------------------


def test_command_prefixes() -> None:
    assert PendingCommand.of("AT+CSQ").prefixes == {"+CSQ"}
    assert PendingCommand.of("AT^ICCID?").prefixes == {"^ICCID"}
    assert PendingCommand.of("at+cpms=?").prefixes == {"+CPMS"}
    assert PendingCommand.of("AT+COPS=3,0;+COPS?").prefixes == {"+COPS"}
    assert PendingCommand.of("ATI").prefixes == frozenset()
    assert PendingCommand.of("AT+CMGS=23").prompt
    assert not PendingCommand.of("AT+CMGR=1").prompt


def test_split_fields_keeps_quoted_commas() -> None:
    assert split_fields('1,"a,b",,3') == ["1", '"a,b"', "", "3"]
    assert split_fields("") == [""]


def test_reply_helpers() -> None:
    reply = Reply(Status.OK, (Line("+CSQ: 20,99"), Line("862000000000001")))
    assert reply.first("+csq") == "20,99"
    assert reply.first("+CMGS") is None
    assert reply.texts == ["862000000000001"]


# --- property: chunking never changes the events -----------------------------------------

TRANSCRIPTS: list[tuple[str | None, bytes]] = [
    ("AT+CMGR=1", b"\r\n+CMGR: ,,27\r\n^RSSI: 3\r\n" + PDU_27.encode() + b"\r\n\r\nOK\r\n"),
    ("AT+CMGS=23", b'\r\n+ZPASR: "x"\r\n> \r\n+CMTI: "SM",1\r\n+CMGS: 1\r\n\r\nOK\r\n'),
    ("AT+CREG?", b"\r\n+CREG: 1\r\n+CREG: 0,5\r\nRING\r\n\r\nOK\r\n"),
    (None, b"\r\n+CDS: 25\r\n" + SR_PDU.encode() + b'\r\n+CMTI: "ME",9\r\n'),
]


@given(st.sampled_from(TRANSCRIPTS), st.lists(st.integers(min_value=0, max_value=400)))
def test_random_chunking(transcript: tuple[str | None, bytes], cuts: list[int]) -> None:
    command, data = transcript
    points = sorted({c for c in cuts if 0 < c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parse_chunks(chunks, command) == parse(data, command)


# --- vendor prefixes and text-mode forms (docs/modems.md) ---------------------------------


def test_option_underscore_urcs_mid_reply_are_urcs() -> None:
    data = b"\r\n+CSQ: 14,99\r\n\r\n_OSSYSI: 2\r\n\r\nOK\r\n"
    assert_any_split(data, "AT+CSQ", [Urc("_OSSYSI", "_OSSYSI: 2"), ok("+CSQ: 14,99")])


def test_sierra_bang_prefix_answers_its_command() -> None:
    data = b"\r\n!ICCID: 89014103211118510720\r\n\r\nOK\r\n"
    assert_any_split(data, "AT!ICCID?", [ok("!ICCID: 89014103211118510720")])
    assert Line("!ICCID: 89014103211118510720").args == "89014103211118510720"


def test_boot_words_are_unsolicited() -> None:
    data = b"\r\nMODEM:STARTUP\r\n\r\nSMS DONE\r\n\r\n+CSQ: 9,99\r\n\r\nOK\r\n"
    assert_any_split(
        data,
        "AT+CSQ",
        [Urc("MODEM:STARTUP", "MODEM:STARTUP"), Urc("SMS DONE", "SMS DONE"), ok("+CSQ: 9,99")],
    )


def test_text_mode_cds_is_whole_on_its_line() -> None:
    line = '+CDS: 6,17,"+4915112345678",145,"26/12/03,09:05:07+32","26/12/03,09:05:09+32",0'
    assert_any_split((f"\r\n{line}\r\n").encode(), None, [Urc("+CDS", line)])


def test_text_mode_cmt_keeps_its_data_line() -> None:
    head = '+CMT: "002B0034",,"26/12/03,09:05:07+32",145,4,0,0,"+1555",145,2'
    data = f"\r\n{head}\r\n006F006B\r\n".encode()
    assert_any_split(data, None, [Urc("+CMT", head, "006F006B")])
