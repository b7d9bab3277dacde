"""One virtual modem: the AT command interpreter, its settings, its SIM and its storage.

The modem is fed bytes by its transport and writes bytes back through `output`. Commands
that take time (a send, a reset) hold the line: later input waits, as it does in a real
firmware, and URCs are held until the final result unless the URC fault says otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from smsgate.config import SimConfig
from smsgate.pdu import Submit

from . import basic_commands, sms
from .atcommand import Answer, ErrorAnswer, ParsedCommand, parse_command, unsupported
from .codes import CME_ERRORS, CMS_ERRORS
from .faults import Faults, FaultUpdate, garbage, noise_urc
from .profiles import Profile
from .sms import PendingPrompt
from .stats import ModemStats, SentPart
from .storage import Memory, Stat

if TYPE_CHECKING:
    from .network import Kind, Network

HANDLERS = {**basic_commands.HANDLERS, **sms.HANDLERS}

SimState = Literal["READY", "SIM PIN", "SIM PUK", "BUSY"]
_ESC = 0x1B
_MAX_LINE = 4096  # a line longer than this is noise; real command buffers are far smaller
_MAX_HELD = 1000  # URCs kept while CNMI mode 0 buffers them
# What a u-blox style "SIM busy" still answers: the commands that set up the link itself.
_ALWAYS_ANSWERED = frozenset({"", "E", "Z", "&F", "V", "Q", "+CMEE"})


@dataclass(frozen=True, slots=True)
class SimCard:
    """The subscriber identity a modem carries."""

    msisdn: str
    imsi: str
    iccid: str
    pin: str | None = None
    puk: str = "12345678"


class VirtualModem:
    """The AT state machine of one virtual modem on one port."""

    def __init__(
        self,
        name: str,
        *,
        sim: SimCard,
        imei: str,
        profile: Profile,
        network: Network,
        config: SimConfig,
        rng: random.Random,
        rssi: int = 20,
    ) -> None:
        self.name = name
        self.sim = sim
        self.imei = imei
        self.profile = profile
        self.network = network
        self.config = config
        self.rng = rng
        self.rssi = rssi
        self.faults = Faults()
        self.stats = ModemStats()
        self.sent: collections.deque[SentPart] = collections.deque(maxlen=config.sent_log)
        self.output: Callable[[bytes], None] = _discard
        self.on_reset: Callable[[VirtualModem], None] | None = None  # replaces the in-place reboot
        self.next_mr = 0
        self.smsc = config.smsc  # lives on the SIM, so it survives a reset
        size = config.storage_size
        self.memories = {
            memory: Memory(memory, size, profile.first_index) for memory in ("SM", "ME", "SR")
        }
        self._loop = asyncio.get_running_loop()
        self._timers: set[asyncio.TimerHandle] = set()
        self._input = bytearray()
        self._echoed = 0  # bytes at the head of _input already echoed
        self._held: list[bytes] = []  # URCs held while a command runs
        self._buffered: list[bytes] = []  # SMS URCs held while AT+CNMI mode is 0
        self._prompt: PendingPrompt | None = None
        self._busy = False
        self._executing = False  # a command handler is running right now
        self._on = False
        self._sim_booting = False
        self._pin_ok = sim.pin is None
        self._pin_tries = 3
        self._last_registration = -1
        self._sms_ready_at = 0.0  # loop time before which SMS commands answer busy
        self.cfun = profile.radio_at_boot
        # AT+CSMS=1: the +CMT/+CDS routed to the TE and not yet acknowledged (AT+CNMA)
        self._unacked: tuple[Kind, str] | None = None
        self._ack_timer: asyncio.TimerHandle | None = None
        self._settings_defaults()

    # ----------------------------------------------------------------- settings

    def _settings_defaults(self) -> None:
        """What ATZ, AT&F and a power cycle restore."""
        self.echo = True
        self.cmee = 0
        self.text_mode = not self.profile.pdu_mode
        self.cnmi = list(self.profile.cnmi_default)  # standard: Quectel's and SIMCom's default
        self.cpms = ["SM", "SM", "SM"]
        self.csmp = [17, 167, 0, 0]
        self.cscs = "IRA"
        self.csdh = 0
        self.creg_n = 0
        self.cereg_n = 0
        self.cgreg_n = 0
        self.cops_format = 0
        self.cmms = 0
        self.csms = 0  # message service: 1 (phase 2+) routes +CMT/+CDS only with AT+CNMA
        self.cusd_n = 0
        self.urc_reports = True  # Huawei ^CURC

    def reset_settings(self) -> None:
        self._settings_defaults()

    # ----------------------------------------------------------------- power

    @property
    def powered(self) -> bool:
        return self._on

    def boot(self, *, announce: bool) -> None:
        """Power on: settings to defaults; the SIM takes `sim_ready_delay` to be ready."""
        self._on = True
        self._settings_defaults()
        self._input.clear()
        self._echoed = 0
        self._held.clear()
        self._buffered.clear()
        self._prompt = None
        self._busy = False
        self._pin_ok = self.sim.pin is None
        self._last_registration = -1
        self.cfun = self.profile.radio_at_boot
        profile = self.profile
        if announce:
            self.emit(b"\r\nRDY\r\n")
            for line in profile.boot_urcs:
                self.emit(f"\r\n{line}\r\n".encode())
        if profile.rssi_every:
            self.later(profile.rssi_every * self.rng.uniform(0.5, 1.5), self._report_rssi)
        if profile.chatter_every:
            self.later(profile.chatter_every * self.rng.uniform(0.5, 1.5), self._chatter)
        delay = self.config.sim_ready_delay
        self._sim_booting = delay > 0
        if self._sim_booting:
            self.later(delay, self._sim_ready)
        self._sms_starts(max(delay, 0.0), announce=announce)
        self.registration_changed()

    def _sms_starts(self, after: float, *, announce: bool = True) -> None:
        """The SMS store gets ready (power-on, radio on): busy until then, then say so."""
        wait = max(after, self.profile.sms_busy)
        self._sms_ready_at = self._loop.time() + wait
        if announce and self.profile.ready_urcs:
            self.later(wait, lambda: self.urc(*self.profile.ready_urcs))

    def sms_busy(self) -> bool:
        """Whether SMS commands answer busy now (the profile's busy period after power-on)."""
        return self._loop.time() < self._sms_ready_at

    def busy_error(self) -> ErrorAnswer:
        kind, code = self.profile.busy_error
        return ErrorAnswer(kind, code)

    def radio_on(self) -> None:
        """AT+CFUN=1 from another state: the SIM is read again and is busy meanwhile."""
        self._sms_starts(0.0)

    def power_off(self) -> None:
        """Lose power: pending work is dropped; storage (on the SIM) is kept."""
        self._on = False
        self._busy = False
        self._prompt = None
        self._input.clear()
        self._echoed = 0
        self._held.clear()
        self._buffered.clear()
        self.cancel_timers()
        self._last_registration = -1
        self._refuse_unacked()  # what the TE never acknowledged goes back to the network

    def reset(self) -> None:
        """Reboot (AT+CFUN=1,1 or a power cycle): clears a hang, takes `reset_time`."""
        self.stats.resets += 1
        self.faults.hung = False
        self.power_off()
        if self.on_reset is not None:
            self.on_reset(self)
        else:
            self.later(self.config.reset_time, lambda: self.boot(announce=True))

    def _report_rssi(self) -> None:
        # Huawei sticks chatter ^RSSI on the modem port until told AT^CURC=0.
        if self.urc_reports and self.registered:
            self.urc(f"^RSSI: {self.signal()}")
        if self.profile.rssi_every:
            self.later(self.profile.rssi_every * self.rng.uniform(0.5, 1.5), self._report_rssi)

    def _chatter(self) -> None:
        # Lines some firmwares print whenever they like: not held back for a reply, so they
        # land between an echo and its answer, or after the `>` prompt.
        profile = self.profile
        if self._on and not self.faults.hung and profile.chatter:
            line = self.rng.choice(profile.chatter)
            self.emit(f"\r\n{line}\r\n".encode())
        if profile.chatter_every:
            self.later(profile.chatter_every * self.rng.uniform(0.5, 1.5), self._chatter)

    def _sim_ready(self) -> None:
        self._sim_booting = False
        if self.faults.sim_not_ready:
            return
        state = self.sim_state()
        self.urc(f"+CPIN: {state}")
        self.registration_changed()

    # ----------------------------------------------------------------- SIM and network

    def sim_state(self) -> SimState:
        if self._sim_booting or self.faults.sim_not_ready:
            return "BUSY"
        if self._pin_tries <= 0:
            return "SIM PUK"
        if not self._pin_ok:
            return "SIM PIN"
        return "READY"

    def enter_pin(self, pin: str, new_pin: str | None) -> bool:
        """AT+CPIN: the PIN (or PUK and new PIN); three wrong PINs lock the SIM to its PUK."""
        state = self.sim_state()
        if state == "SIM PUK":
            if new_pin is None or pin != self.sim.puk:
                return False
            self._pin_tries, self._pin_ok = 3, True
        elif pin == self.sim.pin:
            self._pin_tries, self._pin_ok = 3, True
        else:
            self._pin_tries -= 1
            return False
        self.registration_changed()
        return True

    def registration(self) -> int:
        """<stat> of +CREG/+CEREG: 1 registered, 2 searching, 0 not searching."""
        if not self._on or self.cfun != 1 or self.sim_state() != "READY":
            return 0
        return 2 if self.faults.deregistered else 1

    @property
    def registered(self) -> bool:
        return self.registration() == 1

    @property
    def reachable(self) -> bool:
        """Whether the network can hand this modem a message now."""
        return self._on and not self.faults.hung and self.registered

    def registration_changed(self) -> None:
        """Tell the TE (as +CREG/+CEREG ask) and let the network retry what it holds."""
        stat = self.registration()
        if stat == self._last_registration:
            return
        self._last_registration = stat
        if self.creg_n:
            self.urc(f"+CREG: {stat}")
        if self.cereg_n:
            self.urc(f"+CEREG: {stat}")
        if stat == 1:
            self.network.flush(self)

    def signal(self) -> int:
        if self.faults.signal is not None:
            return self.faults.signal
        return self.rssi if self._on and self.cfun == 1 else 99

    # ----------------------------------------------------------------- faults

    def set_faults(self, update: FaultUpdate) -> None:
        for name, value in update.changes().items():
            setattr(self.faults, name, value)
        self._faults_changed()

    def clear_faults(self) -> None:
        self.faults = Faults()
        self._faults_changed()

    def _faults_changed(self) -> None:
        self.registration_changed()
        self.network.flush(self)  # storage may have room again, or the modem woke up

    # ----------------------------------------------------------------- input

    def feed(self, data: bytes) -> None:
        """Bytes from the TE. A hung or powered-off modem swallows them."""
        self.stats.bytes_received += len(data)
        if not self._on or self.faults.hung:
            return
        if self._prompt is not None and self._prompt.pdu_time is None:
            self._prompt.pdu_time = time.time()  # for latency benchmarks: the PDU starts here
        self._input += data
        self._drain()

    def _drain(self) -> None:
        while self._input and not self._busy and self._on and not self.faults.hung:
            if self._prompt is not None:
                end = _first_of(self._input, b"\x1a", b"\x1b")  # Ctrl-Z sends, ESC cancels
            else:
                end = self._input.find(b"\r")
            if end < 0:
                # Echo what has been typed so far, as a firmware does character by character.
                self._echo(len(self._input))
                if len(self._input) > _MAX_LINE:
                    self._input.clear()
                    self._echoed = 0
                return
            self._echo(end)
            text, terminator = bytes(self._input[:end]), self._input[end]
            del self._input[: end + 1]
            self._echoed = 0
            if self._prompt is not None:
                prompt, self._prompt = self._prompt, None
                if terminator == _ESC:
                    self.reply(Answer())
                else:
                    self._run(sms.finish_prompt, self, prompt, text)
                continue
            if self.echo:
                self.emit(b"\r")
            command = parse_command(_backspaced(text).decode("latin-1"))
            if command is None:
                continue
            self.stats.commands += 1
            handler = HANDLERS.get(command.name, _unsupported)
            if self.profile.busy_all and self.sms_busy() and command.name not in _ALWAYS_ANSWERED:
                handler = _busy
            self._run(handler, self, command)

    def _echo(self, upto: int) -> None:
        if self.echo and upto > self._echoed:
            self.emit(bytes(self._input[self._echoed : upto]))
        self._echoed = max(self._echoed, upto)

    def _run(self, step: Callable[..., Answer | None], *args: object) -> None:
        self._executing = True
        try:
            reply = step(*args)
        except ErrorAnswer as exc:
            reply = Answer(final=self.error_text(exc))
        finally:
            self._executing = False
        if reply is not None:
            self.reply(reply)

    def error_text(self, error: ErrorAnswer) -> str:
        """The final result code for an error, as AT+CMEE and the profile ask."""
        if error.kind == "unsupported":
            return self.profile.unsupported
        if error.kind == "cme":
            if self.cmee == 0:
                return "ERROR"
            detail = CME_ERRORS.get(error.code, "unknown") if self.cmee == 2 else error.code
            return f"+CME ERROR: {detail}"
        if error.kind == "cms":
            # 27.005 gives +CMS ERROR whatever AT+CMEE says; CMEE=2 makes it verbose.
            detail = CMS_ERRORS.get(error.code, "unknown error") if self.cmee == 2 else error.code
            return f"+CMS ERROR: {detail}"
        return "ERROR"

    # ----------------------------------------------------------------- output

    def emit(self, data: bytes) -> None:
        if self._on:
            self.output(data)

    def reply(self, reply: Answer) -> None:
        """Write a response (with the garbage and URC faults), then the URCs it held back."""
        out = bytearray()
        faults = self.faults
        if faults.garbage_rate and self.rng.random() < faults.garbage_rate:
            out += garbage(self.rng)
        if reply.lines:
            out += b"\r\n" + "\r\n".join(reply.lines).encode() + b"\r\n"
        if faults.urc_rate and self.rng.random() < faults.urc_rate:
            out += b"\r\n" + noise_urc(self.rng).encode() + b"\r\n"
        if reply.final is not None:
            out += b"\r\n" + reply.final.encode() + b"\r\n"
        self.emit(bytes(out))
        if self._held and not self._busy and self._prompt is None:
            held, self._held = self._held, []
            self.emit(b"".join(held))

    def urc(self, *lines: str, sms_indication: bool = False) -> None:
        """An unsolicited result code. SMS indications obey AT+CNMI's mode."""
        if not self._on or self.faults.hung:
            return
        data = b"\r\n" + "\r\n".join(lines).encode() + b"\r\n"
        if sms_indication and self.cnmi[0] == 0:
            if len(self._buffered) < _MAX_HELD:
                self._buffered.append(data)
            return
        # The link is "reserved" while a command runs: real firmwares (CNMI mode 2) hold
        # URCs until the final result. The URC fault lets them through at once.
        if self._reserved and not self.faults.urc_rate:
            self._held.append(data)
            return
        self.emit(data)

    @property
    def _reserved(self) -> bool:
        return self._busy or self._executing or self._prompt is not None

    def flush_buffered_urcs(self, *, discard: bool) -> None:
        """AT+CNMI with mode 1-3: bfr=0 flushes the buffered indications, bfr=1 drops them."""
        buffered, self._buffered = self._buffered, []
        if not discard:
            self._held.extend(buffered)

    def noise(self) -> None:
        """Maybe (URC fault) drop an unrelated URC into the line right now."""
        if self.faults.urc_rate and self.rng.random() < self.faults.urc_rate:
            self.emit(b"\r\n" + noise_urc(self.rng).encode() + b"\r\n")

    # ----------------------------------------------------------------- long commands

    def start_prompt(self, prompt: PendingPrompt) -> None:
        if self._input:  # the PDU came in the same read as the command
            prompt.pdu_time = time.time()
        self._prompt = prompt
        self.emit(self.profile.prompt)

    def defer(self, delay: float, finish: Callable[[], Answer]) -> None:
        """Hold the line for `delay` seconds, then answer with what `finish` returns."""
        self._busy = True

        def complete() -> None:
            self._busy = False
            if self.faults.hung:
                return  # a hung firmware never finishes what it started
            self._run(finish)
            self._drain()

        self.later(delay, complete)

    def later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run `callback` after `delay` seconds unless the modem loses power first."""

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    # ----------------------------------------------------------------- sending

    def part_sent(self, submit: Submit, *, pdu_time: float | None = None) -> int:
        """The network took a part: assign its TP-MR, log it and hand it over."""
        mr = self.next_mr
        self.next_mr = (mr + 1) % 256
        concat = submit.concat
        self.stats.parts_sent += 1
        self.sent.append(
            SentPart(
                time=time.time(),
                pdu_time=pdu_time,
                port=self.name,
                sender=self.sim.msisdn,
                to=submit.number,
                mr=mr,
                text=submit.text,
                reference=concat.reference if concat else None,
                total=concat.total if concat else 1,
                sequence=concat.sequence if concat else 1,
                status_report=submit.status_report,
            )
        )
        self.network.submitted(self, submit, mr)
        return mr

    # ----------------------------------------------------------------- receiving

    def take_deliver(self, pdu: str) -> bool:
        """The network hands over an SMS-DELIVER; False if it must try again later."""
        if not self.reachable:
            return False
        if self.cnmi[1] == 2:
            if not self._route("deliver", pdu):
                return False
            self.stats.inbound_delivered += 1
            sms.indicate_direct(self, pdu)
            return True
        memory = self.memories[self.cpms[2]]
        if self.faults.storage_full or memory.full:
            return False
        index = memory.store(pdu, Stat.REC_UNREAD)
        self.stats.inbound_delivered += 1
        if self.cnmi[1] in (1, 3):
            named = self.profile.indication_memory or memory.name
            self.urc(f'+CMTI: "{named}",{index}', sms_indication=True)
        return True

    def take_report(self, pdu: str) -> bool:
        """The network hands over a status report; routed as AT+CNMI's ds asks."""
        if not self.reachable:
            return False
        ds = self.cnmi[3]
        if ds == 2:
            memory = self.memories["SR"]
            if self.faults.storage_full or memory.full:
                return False
            index = memory.store(pdu, Stat.REC_UNREAD)
            self.urc(f'+CDSI: "SR",{index}', sms_indication=True)
        elif ds == 1:
            if not self._route("report", pdu):
                return False
            sms.indicate_report(self, pdu)
        else:
            self.stats.reports_discarded += 1
        self.stats.reports_delivered += 1
        return True

    def _route(self, kind: Kind, pdu: str) -> bool:
        """Whether a +CMT/+CDS may go to the TE now. With AT+CSMS=1 one at a time: the next
        waits at the network until AT+CNMA acknowledges this one (or its time runs out)."""
        if self.csms != 1:
            return True  # acknowledged to the network at once: lost if the TE misses it
        if self._unacked is not None:
            return False
        self._unacked = (kind, pdu)
        self._ack_timer = self._loop.call_later(self.config.cnma_timeout, self._not_acknowledged)
        return True

    def acknowledge(self) -> bool:
        """AT+CNMA: the TE has the +CMT/+CDS; False when none awaits it."""
        if self.csms != 1 or self._unacked is None:
            return False
        self._unacked = None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self.stats.acknowledged += 1
        self.network.flush(self)  # the next one the network holds may come now
        return True

    def _not_acknowledged(self) -> None:
        """No AT+CNMA in time: RP-ERROR to the network and routing to the TE switched off
        (<mt> and <ds> to 0), as 3GPP TS 27.005 has it; the SMSC tries again later, when a
        report finds <ds> still 0 it is dropped (stats.reports_discarded)."""
        self._ack_timer = None
        self.cnmi[1] = self.cnmi[3] = 0
        self._refuse_unacked()

    def _refuse_unacked(self) -> None:
        unacked, self._unacked = self._unacked, None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if unacked is None:
            return
        self.stats.unacknowledged += 1
        kind, pdu = unacked
        if kind == "deliver":
            self.stats.inbound_delivered -= 1  # not delivered after all
        else:
            self.stats.reports_delivered -= 1
        self.network.retry_later(self, kind, pdu)


def _first_of(buffer: bytearray, *markers: bytes) -> int:
    found = [i for i in (buffer.find(m) for m in markers) if i >= 0]
    return min(found) if found else -1


def _backspaced(line: bytes) -> bytes:
    """The line as typed, with backspaces (S5) applied: people use terminals too."""
    if b"\x08" not in line:
        return line
    kept = bytearray()
    for byte in line:
        if byte == 0x08:
            del kept[-1:]
        else:
            kept.append(byte)
    return bytes(kept)


def _discard(data: bytes) -> None:
    """Output of a modem nobody listens to."""


def _unsupported(modem: VirtualModem, command: ParsedCommand) -> Answer | None:
    raise unsupported()


def _busy(modem: VirtualModem, command: ParsedCommand) -> Answer | None:
    raise modem.busy_error()
