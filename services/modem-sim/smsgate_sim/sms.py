"""The 27.005 SMS commands: modes, storage, indications, and sending after the `> ` prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from smsgate.pdu import (
    Alphabet,
    Deliver,
    StatusReport,
    Submit,
    decode,
    encode_submit,
)
from smsgate.pdu.text_mode import UDHI, submit_from_user_data, text_time, user_data

from . import basic_commands, codes
from .atcommand import (
    OK,
    Answer,
    Commands,
    Op,
    ParsedCommand,
    cms,
    int_arg,
    int_setting,
    quoted,
    split_args,
    syntax_error,
)
from .storage import ALL, STAT_BY_NAME, STAT_NAMES, Memory, Stat, Stored, tpdu_length

if TYPE_CHECKING:
    from .modem import VirtualModem

HANDLERS = Commands()
_MAX_TPDU = 176  # 164 octets of SMS-SUBMIT plus slack; beyond that no modem prompts
_READABLE = ("SM", "ME", "SR", "MT")
_SRR = 0x20  # TP-SRR (SMS-SUBMIT) / TP-SRI (SMS-DELIVER)
_WRITABLE = ("SM", "ME", "MT")
PromptKind = Literal["send", "write"]


@dataclass(slots=True)
class PendingPrompt:
    """A `> ` prompt waiting for a PDU (or text) and Ctrl-Z."""

    kind: PromptKind
    length: int | None = None  # PDU mode: the TPDU length the command announced
    number: str | None = None  # text mode: the destination
    stat: Stat = Stat.STO_UNSENT
    pdu_time: float | None = None  # Unix time the first byte after the prompt arrived


def require_sim(m: VirtualModem) -> None:
    basic_commands.require_sim(m, sms=True)


# --------------------------------------------------------------------- settings


@HANDLERS.handles("+CMGF")
def cmgf(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.READ:
        return Answer([f"+CMGF: {int(m.text_mode)}"])
    if cmd.op is Op.TEST:
        return Answer(["+CMGF: (0,1)" if m.profile.pdu_mode else "+CMGF: (1)"])
    text_mode = int_arg(split_args(cmd.args), 0, 0, 1, default=0) == 1
    if not text_mode and not m.profile.pdu_mode:
        raise syntax_error()  # text-only firmwares refuse PDU mode with a plain ERROR
    m.text_mode = text_mode
    return OK


@HANDLERS.handles("+CSDH")
def csdh(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return int_setting(m, cmd, "+CSDH", "csdh", 1)


@HANDLERS.handles("+CSMS")
def csms(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.READ:
        return Answer([f"+CSMS: {m.csms},1,1,1"])
    if cmd.op is Op.TEST:
        return Answer(["+CSMS: (0,1)"])
    m.csms = int_arg(split_args(cmd.args), 0, 0, 1)
    return Answer(["+CSMS: 1,1,1"])


@HANDLERS.handles("+CNMA")
def cnma(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    """Acknowledge the +CMT/+CDS routed last (AT+CSMS=1); 340 when none awaits one."""
    if cmd.op is Op.TEST:
        return Answer(["+CNMA: (0-2)"])
    args = split_args(cmd.args) if cmd.op is Op.SET else []
    if args and args[0] not in ("0", "1"):
        raise cms(303)  # a negative acknowledgement (2) is not modelled
    if not m.acknowledge():
        raise cms(340)
    return OK


@HANDLERS.handles("+CSCA")
def csca(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return OK
    require_sim(m)
    if cmd.op is Op.READ:
        kind = 145 if m.smsc.startswith("+") else 129
        return Answer([f"+CSCA: {quoted(m.smsc)},{kind}"])
    number = split_args(cmd.args)[0]
    if cmd.op is not Op.SET or not number:
        raise syntax_error()
    m.smsc = number
    return OK


@HANDLERS.handles("+CSMP")
def csmp(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.READ:
        return Answer(["+CSMP: " + ",".join(str(v) for v in m.csmp)])
    if cmd.op is Op.TEST:
        return OK
    args = split_args(cmd.args)
    if cmd.op is not Op.SET or len(args) > 4:
        raise syntax_error()
    m.csmp = [int_arg(args, i, 0, 255, default=m.csmp[i]) for i in range(4)]
    return OK


@HANDLERS.handles("+CMMS")
def cmms(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return int_setting(m, cmd, "+CMMS", "cmms", 2)


@HANDLERS.handles("+CNMI")
def cnmi(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.READ:
        return Answer(["+CNMI: " + ",".join(str(v) for v in m.cnmi)])
    if cmd.op is Op.TEST:
        return Answer(["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"])
    args = split_args(cmd.args)
    if cmd.op is not Op.SET or len(args) > 5:
        raise syntax_error()
    highs = (3, 3, 2, 2, 1)
    # An omitted value keeps its setting (Cinterion relies on it for <bfr>).
    values = [int_arg(args, i, 0, highs[i], default=m.cnmi[i]) for i in range(5)]
    if values[2] == 1:
        raise syntax_error()  # bm=1 (cell broadcast storage) is not offered
    profile = m.profile
    if (
        values[1] not in profile.cnmi_mt
        or values[3] not in profile.cnmi_ds
        or values[4] not in profile.cnmi_bfr
    ):
        raise cms(codes.CMS_NOT_SUPPORTED)
    m.cnmi = values
    if values[0] != 0:
        m.flush_buffered_urcs(discard=values[4] == 1)
    return OK


def _usage(m: VirtualModem, memory: Memory) -> tuple[int, int]:
    used = memory.size if m.faults.storage_full else memory.used
    return used, memory.size


@HANDLERS.handles("+CPMS")
def cpms(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return Answer(['+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")'])  # "MT" taken, not listed
    require_sim(m)
    if cmd.op is Op.READ:
        fields = []
        for name in m.cpms:
            used, total = _usage(m, m.memories[name])
            fields.append(f"{quoted(name)},{used},{total}")
        return Answer(["+CPMS: " + ",".join(fields)])
    args = split_args(cmd.args)
    if cmd.op is not Op.SET or not 1 <= len(args) <= 3:
        raise syntax_error()
    chosen = list(m.cpms)
    for i, value in enumerate(args):
        name = (value or "").upper()
        if name not in (_READABLE if i == 0 else _WRITABLE):
            raise cms(codes.CMS_NOT_ALLOWED)
        chosen[i] = "SM" if name == "MT" else name  # 27.005 "MT": SIM and ME; here the SIM
    m.cpms = chosen
    counts = [f"{u},{t}" for u, t in (_usage(m, m.memories[n]) for n in chosen)]
    return Answer(["+CPMS: " + ",".join(counts)])


# --------------------------------------------------------------------- sending


@HANDLERS.handles("+CMGS", "+CMGW")
def cmgs(m: VirtualModem, cmd: ParsedCommand) -> Answer | None:
    kind: PromptKind = "send" if cmd.name == "+CMGS" else "write"
    if cmd.op is Op.TEST:
        return OK
    if cmd.op is not Op.SET:
        raise syntax_error()
    require_sim(m)
    args = split_args(cmd.args)
    stat = (
        Stat(int_arg(args, 1, 0, 3, default=2)) if kind == "write" and not m.text_mode else Stat(2)
    )
    if m.text_mode:
        number = _number_in(m, args[0] or "")
        if not number:
            raise cms(codes.CMS_INVALID_TEXT)
        m.start_prompt(PendingPrompt(kind, number=number, stat=stat))
        return None
    try:
        length = int(args[0] or "")
    except ValueError:
        raise syntax_error() from None
    if not 1 <= length <= _MAX_TPDU:
        raise cms(codes.CMS_INVALID_PDU)
    m.start_prompt(PendingPrompt(kind, length=length, stat=stat))
    return None


def finish_prompt(m: VirtualModem, prompt: PendingPrompt, payload: bytes) -> Answer | None:
    """The PDU (or text) after the prompt arrived with Ctrl-Z: store it or send it."""
    m.stats.pdus_received += 1
    if prompt.number is not None:
        pdu = _text_submit(m, prompt.number, payload)
        submit = _submit(pdu, None)
    else:
        pdu = "".join(payload.decode("latin-1").split()).upper()
        submit = _submit(pdu, prompt.length)
    if submit is None:
        m.stats.pdus_malformed += 1
        raise cms(codes.CMS_INVALID_PDU)
    if prompt.kind == "write":
        memory = m.memories[m.cpms[1]]
        index = None if m.faults.storage_full else memory.store(pdu, prompt.stat)
        if index is None:
            raise cms(codes.CMS_MEMORY_FULL)
        return Answer([f"+CMGW: {index}"])
    send(m, submit, pdu_time=prompt.pdu_time)
    return None


def _submit(pdu: str, length: int | None) -> Submit | None:
    """The SMS-SUBMIT in `pdu` if it decodes and its TPDU is `length` octets (when given)."""
    try:
        raw = bytes.fromhex(pdu)
        if len(raw) < 2 or (length is not None and len(raw) - 1 - raw[0] != length):
            return None
        message = decode(pdu)
    except ValueError:  # PduError is one too
        return None
    return message if isinstance(message, Submit) else None


def _text_submit(m: VirtualModem, number: str, payload: bytes) -> str:
    """Text mode: the text as one SMS-SUBMIT PDU, with TP-SRR from AT+CSMP's first octet.

    With TP-UDHI set in AT+CSMP the TE gives the user data, header included, as hex octets
    (27.005 §3.1 <data>): that is how text mode sends one part of a concatenated message.
    """
    first, validity, protocol, coding = m.csmp
    try:
        if first & UDHI:
            data = bytes.fromhex(payload.decode("ascii").strip())
            return submit_from_user_data(
                number, first=first, validity=validity, protocol=protocol, coding=coding, data=data
            )
        if m.cscs == "UCS2":
            text = bytes.fromhex(payload.decode("ascii").strip()).decode("utf-16-be")
        else:
            text = payload.decode("utf-8", errors="replace").strip("\r\n")
        parts = encode_submit(number, text, status_report=bool(first & _SRR))
    except (ValueError, UnicodeError):
        m.stats.pdus_malformed += 1
        raise cms(codes.CMS_INVALID_TEXT) from None
    if len(parts) != 1:
        m.stats.pdus_malformed += 1
        raise cms(codes.CMS_INVALID_TEXT)  # text mode sends one PDU; longer text does not fit
    return parts[0].pdu


def send(m: VirtualModem, submit: Submit, *, pdu_time: float | None = None) -> None:
    """Hand a part to the network after the part time; +CMGS: <mr> or +CMS ERROR."""
    if not m.registered:
        m.stats.send_failures += 1
        raise cms(codes.CMS_NO_NETWORK)
    failure = m.faults.send_fails(m.rng)
    m.noise()  # a URC between the prompt and +CMGS, when the URC fault is on

    def finish() -> Answer:
        error = failure if failure is not None else (None if m.registered else 331)
        if error is not None:
            m.stats.send_failures += 1
            raise cms(error)
        return Answer([f"+CMGS: {m.part_sent(submit, pdu_time=pdu_time)}"])

    m.defer(m.network.part_time(), finish)


# --------------------------------------------------------------------- storage


def _memory(m: VirtualModem) -> Memory:
    require_sim(m)
    return m.memories[m.cpms[0]]


@HANDLERS.handles("+CMGR")
def cmgr(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return OK
    if cmd.op is not Op.SET:
        raise syntax_error()
    memory = _memory(m)
    index = int_arg(split_args(cmd.args), 0, 0, 65535)
    if not memory.in_range(index):
        raise cms(codes.CMS_INVALID_INDEX)
    stored = memory.get(index)
    if stored is None:
        return OK  # an empty slot in range reads as nothing, as SIMCom and Quectel answer
    lines = _render(m, stored, prefix="+CMGR: ")
    if stored.stat is Stat.REC_UNREAD:
        stored.stat = Stat.REC_READ
    return Answer(lines)


@HANDLERS.handles("+CMGL")
def cmgl(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        names = ",".join(quoted(n) for n in STAT_BY_NAME) if m.text_mode else "0-4"
        return Answer([f"+CMGL: ({names})"])
    memory = _memory(m)
    args: list[str | None] = split_args(cmd.args) if cmd.op is Op.SET else [None]
    if m.text_mode:
        wanted = STAT_BY_NAME.get((args[0] or "REC UNREAD").upper())
        if wanted is None:
            raise cms(codes.CMS_INVALID_TEXT)
    else:
        wanted = int_arg(args, 0, 0, ALL, default=0)
    lines: list[str] = []
    for index, stored in memory.listing(wanted):
        lines += _render(m, stored, prefix=f"+CMGL: {index},")
        if stored.stat is Stat.REC_UNREAD:
            stored.stat = Stat.REC_READ
    return Answer(lines)


@HANDLERS.handles("+CMGD")
def cmgd(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    memory = _memory(m)
    if cmd.op is Op.TEST:
        used = ",".join(str(i) for i, _ in memory.listing(ALL))
        return Answer([f"+CMGD: ({used}),(0-4)"])
    if cmd.op is not Op.SET:
        raise syntax_error()
    args = split_args(cmd.args)
    flag = int_arg(args, 1, 0, 4, default=0)
    if flag:
        memory.delete_by_flag(flag)
    else:
        index = int_arg(args, 0, 0, 65535)
        if not memory.in_range(index):
            raise cms(codes.CMS_INVALID_INDEX)
        memory.delete(index)
    m.network.flush(m)  # room again: the network retries what it holds for this SIM
    return OK


# --------------------------------------------------------------------- rendering


def _render(m: VirtualModem, stored: Stored, *, prefix: str) -> list[str]:
    """A stored message as +CMGR / +CMGL lines, in PDU or text mode."""
    if not m.text_mode:
        return [f"{prefix}{int(stored.stat)},,{stored.tpdu_length}", stored.pdu]
    stat = quoted(STAT_NAMES[stored.stat])
    message = decode(stored.pdu)
    if isinstance(message, StatusReport):
        return [f"{prefix}{stat},{_report_fields(message)}"]
    if isinstance(message, Deliver):
        data, length = _text_data(m, message, stored.pdu)
        sender = quoted(_number_out(m, message.sender))
        header = f"{stat},{sender},,{quoted(text_time(message.timestamp))}"
        if m.csdh and prefix.startswith("+CMGR"):
            header += "," + _details(message, stored.pdu, length)
        elif m.csdh:
            header += f",{_toa(message.sender)},{length}"
        return [prefix + header, data]
    return [
        f"{prefix}{stat},{quoted(_number_out(m, message.number))},,",
        _text_out(m, message.text, message.alphabet, message.data),
    ]


def indicate_direct(m: VirtualModem, pdu: str) -> None:
    """+CMT: the message goes straight to the TE (AT+CNMI mt=2), not to storage."""
    if not m.text_mode:
        m.urc(f"+CMT: ,{tpdu_length(pdu)}", pdu, sms_indication=True)
        return
    message = decode(pdu)
    assert isinstance(message, Deliver)
    data, length = _text_data(m, message, pdu)
    header = (
        f"+CMT: {quoted(_number_out(m, message.sender))},,{quoted(text_time(message.timestamp))}"
    )
    if m.csdh:
        header += "," + _details(message, pdu, length)
    m.urc(header, data, sms_indication=True)


def indicate_report(m: VirtualModem, pdu: str) -> None:
    """+CDS: the status report goes straight to the TE (AT+CNMI ds=1)."""
    if not m.text_mode:
        m.urc(f"+CDS: {tpdu_length(pdu)}", pdu, sms_indication=True)
        return
    report = decode(pdu)
    assert isinstance(report, StatusReport)
    m.urc(f"+CDS: {_report_fields(report)}", sms_indication=True)


def _text_data(m: VirtualModem, message: Deliver, pdu: str) -> tuple[str, int]:
    """The <data> line of a text-mode message and its <length>.

    With TP-UDHI set the user data, header included, goes out as hex octets and <length>
    is TP-UDL (27.005 §3.1), which is what lets a TE put concatenated parts together.
    """
    fields = user_data(pdu)
    if fields.first & UDHI:
        return fields.data.hex().upper(), fields.length
    return _text_out(m, message.text, message.alphabet, message.data), fields.length


def _details(message: Deliver, pdu: str, length: int) -> str:
    """The AT+CSDH=1 tail: <tooa>,<fo>,<pid>,<dcs>,<sca>,<tosca>,<length>."""
    fields = user_data(pdu)
    smsc = message.smsc or ""
    numbers = f"{_toa(message.sender)},{fields.first},{fields.protocol},{fields.coding}"
    return f"{numbers},{quoted(smsc)},{_toa(smsc)},{length}"


def _toa(number: str) -> int:
    return 145 if number.startswith("+") else 129


def _number_in(m: VirtualModem, raw: str) -> str:
    """A number as the TE wrote it: UCS-2 hex while AT+CSCS="UCS2" (27.005 <da>)."""
    if m.cscs == "UCS2" and raw and len(raw) % 4 == 0:
        try:
            return bytes.fromhex(raw).decode("utf-16-be")
        except ValueError:
            return raw
    return raw


def _number_out(m: VirtualModem, number: str) -> str:
    return number.encode("utf-16-be").hex().upper() if m.cscs == "UCS2" else number


def _report_fields(report: StatusReport) -> str:
    toa = 145 if report.recipient.startswith("+") else 129
    return (
        f'6,{report.message_reference},"{report.recipient}",{toa},'
        f'"{text_time(report.timestamp)}","{text_time(report.discharge_time)}",{report.status}'
    )


def _text_out(m: VirtualModem, text: str, alphabet: Alphabet, data: bytes) -> str:
    # Modems print UCS-2 and 8-bit messages as hex in text mode, whatever the charset.
    if alphabet is Alphabet.DATA8:
        return data.hex().upper()
    if alphabet is Alphabet.UCS2 or m.cscs == "UCS2":
        return text.encode("utf-16-be").hex().upper()
    return text
