"""V.250 basics and the 27.007 commands: identity, SIM, signal, registration, power, USSD."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smsgate.pdu.text_mode import pack_ussd, unpack_ussd

from . import codes
from .atcommand import (
    OK,
    Answer,
    Commands,
    Op,
    ParsedCommand,
    cme,
    cms,
    int_arg,
    int_setting,
    quoted,
    split_args,
    syntax_error,
    unsupported,
)

if TYPE_CHECKING:
    from .modem import VirtualModem

HANDLERS = Commands()
REVISION = "SMSGATE-SIM 1.0"


# SIM state -> (+CME ERROR, +CMS ERROR) for commands that need a ready, unlocked SIM.
_SIM_ERRORS = {
    "BUSY": (codes.CME_SIM_BUSY, codes.CMS_SIM_BUSY),
    "SIM PIN": (codes.CME_SIM_PIN_REQUIRED, codes.CMS_SIM_PIN_REQUIRED),
    "SIM PUK": (12, 316),
}


def require_sim(m: VirtualModem, *, sms: bool = False) -> None:
    """Raise the +CME (or, for SMS commands, +CMS) error of a SIM that is not ready."""
    errors = _SIM_ERRORS.get(m.sim_state())
    if errors is not None:
        raise cms(errors[1]) if sms else cme(errors[0])
    if sms and m.sms_busy():
        raise m.busy_error()


def only_exec(cmd: ParsedCommand) -> None:
    if cmd.op is not Op.EXEC:
        raise syntax_error()


# --------------------------------------------------------------------- V.250 basics


@HANDLERS.handles("")
def at(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return OK


@HANDLERS.handles("Z", "&F")
def factory(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.args not in ("", "0"):
        raise syntax_error()
    m.reset_settings()
    return OK


@HANDLERS.handles("E")
def echo(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.args not in ("", "0", "1"):
        raise syntax_error()
    m.echo = cmd.args == "1"
    return OK


@HANDLERS.handles("V")
def verbose(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.args != "1":
        raise syntax_error()  # numeric result codes (ATV0) are not simulated
    return OK


@HANDLERS.handles("Q", "&W", "H", "&C", "&D")
def accepted(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return OK


@HANDLERS.handles("S")
def s_register(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer(["000"]) if cmd.op is Op.READ else OK


@HANDLERS.handles("I")
def information(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer([m.profile.manufacturer, m.profile.model, f"Revision: {REVISION}"])


@HANDLERS.handles("+CGMI", "+GMI")
def manufacturer(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer([m.profile.manufacturer]) if cmd.op is Op.EXEC else OK


@HANDLERS.handles("+CGMM", "+GMM")
def model(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer([m.profile.model]) if cmd.op is Op.EXEC else OK


@HANDLERS.handles("+CGMR", "+GMR")
def revision(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer([REVISION]) if cmd.op is Op.EXEC else OK


@HANDLERS.handles("+CGSN", "+GSN")
def imei(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return Answer([m.imei]) if cmd.op is Op.EXEC else OK


@HANDLERS.handles("+CMEE")
def cmee(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return int_setting(m, cmd, "+CMEE", "cmee", 2)


@HANDLERS.handles("+CSCS")
def charset(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.READ:
        return Answer([f"+CSCS: {quoted(m.cscs)}"])
    if cmd.op is Op.TEST:
        return Answer(['+CSCS: ("IRA","GSM","UCS2")'])
    value = (split_args(cmd.args)[0] or "").upper()
    if cmd.op is not Op.SET or value not in ("IRA", "GSM", "UCS2"):
        raise syntax_error()
    m.cscs = value
    return OK


# --------------------------------------------------------------------- SIM


@HANDLERS.handles("+CPIN")
def cpin(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return OK
    state = m.sim_state()
    if cmd.op is Op.READ:
        if state == "BUSY":
            raise cme(codes.CME_SIM_BUSY)
        # Wavecom answers the query without a final OK; parsers must not wait for one.
        return Answer([f"+CPIN: {state}"], "OK" if m.profile.cpin_ok else None)
    if cmd.op is not Op.SET:
        raise syntax_error()
    args = split_args(cmd.args)
    if state == "BUSY":
        raise cme(codes.CME_SIM_BUSY)
    if state == "READY" or not args[0]:
        raise cme(codes.CME_NOT_ALLOWED)
    if not m.enter_pin(args[0], args[1] if len(args) > 1 else None):
        raise cme(codes.CME_INCORRECT_PASSWORD)
    return OK


@HANDLERS.handles("+CIMI")
def cimi(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return OK
    only_exec(cmd)
    require_sim(m)
    return Answer([m.sim.imsi])


ICCID_COMMANDS = (
    *("+CCID", "+ICCID", "^ICCID", "+QCCID", "+CICCID", "#CCID", "^SCID", "!ICCID", "$MYCCID"),
)


@HANDLERS.handles(*ICCID_COMMANDS)
def iccid(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    """Each family has its own command and answer for the ICCID (see the profile)."""
    template = dict(m.profile.iccid).get(cmd.name)
    if template is None:
        raise unsupported()
    if cmd.op is Op.TEST:
        return OK
    if cmd.op is Op.SET:
        raise syntax_error()
    require_sim(m)
    return Answer([template.format(m.sim.iccid)])


@HANDLERS.handles("+CRSM")
def crsm(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    """Restricted SIM access; only READ BINARY of EF_ICCID (2FE2), as raw swapped nibbles."""
    if cmd.op is Op.TEST:
        return OK
    args = split_args(cmd.args)
    if cmd.op is not Op.SET or args[:2] != ["176", "12258"]:
        raise cme(codes.CME_NOT_ALLOWED)
    require_sim(m)
    padded = m.sim.iccid.ljust(20, "F")
    raw = "".join(padded[i + 1] + padded[i] for i in range(0, 20, 2))
    return Answer([f'+CRSM: 144,0,"{raw}"'])


# --------------------------------------------------------------------- radio


@HANDLERS.handles("+CSQ")
def csq(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return Answer(["+CSQ: (0-31,99),(0-7,99)"])
    only_exec(cmd)
    return Answer([f"+CSQ: {m.signal()},99"])


def _registration(m: VirtualModem, cmd: ParsedCommand, prefix: str, attribute: str) -> Answer:
    if cmd.op is Op.TEST:
        return Answer([f"{prefix}: (0-2)"])
    if cmd.op is Op.READ:
        n = getattr(m, attribute)
        stat = m.registration()
        if n == 2 and stat in (1, 5):
            # 24-bit tracking area code and 28-bit cell id, as LTE modems print them.
            return Answer([f'{prefix}: {n},{stat},"00A1","{0x01B2C3 + len(m.name):07X}",7'])
        return Answer([f"{prefix}: {n},{stat}"])
    if cmd.op is not Op.SET:
        raise syntax_error()
    setattr(m, attribute, int_arg(split_args(cmd.args), 0, 0, 2))
    return OK


@HANDLERS.handles("+CREG")
def creg(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return _registration(m, cmd, "+CREG", "creg_n")


@HANDLERS.handles("+CEREG")
def cereg(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return _registration(m, cmd, "+CEREG", "cereg_n")


@HANDLERS.handles("+CGREG")
def cgreg(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    return _registration(m, cmd, "+CGREG", "cgreg_n")


@HANDLERS.handles("+COPS")
def cops(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    operator, plmn = m.config.operator, m.sim.imsi[:5]
    if cmd.op is Op.TEST:
        return Answer([f'+COPS: (2,"{operator}","{operator}","{plmn}",7),,(0-4),(0-2)'])
    if cmd.op is Op.READ:
        if not m.registered:
            return Answer(["+COPS: 0"])
        name = plmn if m.cops_format == 2 else operator
        return Answer([f'+COPS: 0,{m.cops_format},"{name}",7'])
    if cmd.op is not Op.SET:
        raise syntax_error()
    args = split_args(cmd.args)
    mode = int_arg(args, 0, 0, 4)
    if mode == 3 or (len(args) > 1 and args[1] is not None):
        m.cops_format = int_arg(args, 1, 0, 2)
    return OK


@HANDLERS.handles("+CFUN")
def cfun(m: VirtualModem, cmd: ParsedCommand) -> Answer | None:
    if cmd.op is Op.TEST:
        return Answer(["+CFUN: (0,1,4),(0,1)"])
    if cmd.op is Op.READ:
        return Answer([f"+CFUN: {m.cfun}"])
    if cmd.op is not Op.SET:
        raise syntax_error()
    args = split_args(cmd.args)
    fun = int_arg(args, 0, 0, 4)
    if fun not in (0, 1, 4):
        raise syntax_error()
    if int_arg(args, 1, 0, 1, default=0) == 1:
        m.reply(OK)  # the OK goes out before the firmware restarts
        m.reset()
        return None
    was = m.cfun
    m.cfun = fun
    if fun == 1 and was != 1:
        m.radio_on()
    m.registration_changed()
    return OK


@HANDLERS.handles("^CURC")
def curc(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if m.profile.name != "huawei":
        raise unsupported()
    if cmd.op is Op.READ:
        return Answer([f"^CURC: {int(m.urc_reports)}"])
    if cmd.op is Op.SET:
        m.urc_reports = int_arg(split_args(cmd.args), 0, 0, 1) == 1
    return OK


# --------------------------------------------------------------------- USSD


@HANDLERS.handles("+CUSD")
def cusd(m: VirtualModem, cmd: ParsedCommand) -> Answer:
    if cmd.op is Op.TEST:
        return Answer(["+CUSD: (0-2)"])
    if cmd.op is Op.READ:
        return Answer([f"+CUSD: {m.cusd_n}"])
    if cmd.op is not Op.SET:
        raise syntax_error()
    args = split_args(cmd.args)
    n = int_arg(args, 0, 0, 2, default=0)
    request = args[1] if len(args) > 1 else None
    if n == 2:
        return OK  # cancels a session; there is never one open for long
    m.cusd_n = n
    if request is None:
        return OK
    require_sim(m)
    if not m.registered:
        raise cme(codes.CME_NO_NETWORK)
    style = m.profile.ussd
    if style == "packed":
        # Huawei takes and gives USSD strings as packed GSM 7-bit in hex (gammu
        # F_ENCODED_USSD); a plain "*100#" is not hex and is refused.
        request = unpack_ussd(request)
        if request is None:
            raise cme(codes.CME_NOT_ALLOWED)
    answer = m.network.ussd_answer(request)
    m.stats.ussd += 1
    if style == "packed":
        line = f'+CUSD: 0,"{pack_ussd(answer)}",15'
    elif style == "ucs2":
        line = f'+CUSD: 0,"{answer.encode("utf-16-be").hex().upper()}",72'
    else:
        line = f'+CUSD: 0,"{answer}",15'
    if n == 1:
        m.later(m.network.ussd_delay(), lambda: m.urc(line))
    return OK
