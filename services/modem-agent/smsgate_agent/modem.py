"""One modem's life: open, initialise, identify, send, receive, report, stay healthy.

`Modem.run()` owns the port. It opens it, brings the modem into PDU mode with message
indications on, then keeps it healthy: registration and signal are polled, storage is
swept for messages whose URC was lost, and a modem that stops answering goes down the
recovery ladder (AT retries, ESC/Ctrl-Z, reopen, reset command, then down with back-off).
A modem that disappears (USB unplug, TCP reset) is reopened when it comes back.

An inbound SMS is deleted from the modem only after `on_inbound` returned, which the agent
does once the SMS is durable on the bus; a crash in between gives a duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from smsgate.config import AgentPort
from smsgate.contracts import PartResult
from smsgate.pdu import Deliver, PduError, StatusReport, Submit, decode, encode_submit

from smsgate_agent.at import (
    AtChannel,
    AtClosed,
    AtError,
    AtTimeout,
    CommandError,
    NoPrompt,
    Reply,
    SendInterrupted,
    SendTimeout,
    Status,
    Urc,
    split_fields,
    unquote,
)
from smsgate_agent.cms import CME_BUSY, Verdict, classify_cms, describe_cme, describe_cms
from smsgate_agent.concat import ConcatReferences
from smsgate_agent.transport import Transport, TransportError, open_transport

log = logging.getLogger("smsgate.modem")

InboundHandler = Callable[[Deliver], Awaitable[None]]
ReportHandler = Callable[[StatusReport], Awaitable[None]]
StateHandler = Callable[["ModemInfo"], None]
# Called before each part's AT+CMGS; what it returns is awaited before the PDU is written
# (at the prompt), so a bus round trip overlaps the modem's.
PartHook = Callable[[int], Awaitable[Awaitable[object] | None]]
Opener = Callable[[str, int], Awaitable[Transport]]

# Storages in order of preference: the SIM first (what every modem has), then combined.
STORAGE_PREFERENCE = ("SM", "MT", "ME")
ReportsMode = Literal["stored", "direct", "none"]
Problem = Literal["lost", "unresponsive", "reinit", "crashed"]
# +CNMI combinations, best first: stored SMS (+CMTI) and stored reports (+CDSI) survive a
# crash of ours; direct reports (+CDS) are the fallback, then no reports at all.
CNMI_CHOICES: tuple[tuple[str, ReportsMode], ...] = (
    ("2,1,0,2,0", "stored"),
    ("2,1,0,1,0", "direct"),
    ("1,1,0,2,0", "stored"),
    ("1,1,0,1,0", "direct"),
    ("2,1,0,0,0", "none"),
    ("1,1,0,0,0", "none"),
    ("2,1", "none"),
)
ICCID_COMMANDS = ("AT+CCID", "AT+QCCID", "AT^ICCID?", "AT+ICCID", "AT+CRSM=176,12258,0,0,10")
# +CMS codes that mean "busy right now" during initialisation (SIM busy, vendor busy).
CMS_BUSY = frozenset({314, 512, 515})


class ModemStatus(StrEnum):
    INITIALISING = "initialising"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class ModemInfo:
    """What is known about the modem: a snapshot, replaced (never changed) on every change."""

    status: ModemStatus = ModemStatus.DOWN
    imsi: str | None = None
    iccid: str | None = None
    imei: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    operator: str | None = None
    signal: int | None = None  # dBm
    registration: str | None = None  # home | roaming | searching | unregistered | denied | unknown
    smsc: str | None = None  # the service centre stored on the SIM (AT+CSCA?)
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """How a send ended: every part accepted (ok), or why not and whether to try again."""

    ok: bool
    parts: list[PartResult]  # parts handed to the modem, in order; failed ones carry `error`
    error: str | None = None
    temporary: bool = False  # nothing reached the network and a retry (elsewhere) may work
    code: int | None = None  # the +CMS ERROR code, when there was one


@dataclass(frozen=True, slots=True)
class ModemTimings:
    """The clocks of one modem's life; tests shrink them, operators rarely need to."""

    poll_interval: float = 30.0  # registration and signal
    urc_poll_gap: float = 5.0  # a +CREG URC polls early, but not more often than this
    sweep_interval: float = 300.0  # AT+CMGL=4, for messages whose URC was lost
    prompt_timeout: float = 10.0  # from AT+CMGS=<n> to `>`
    probe_timeout: float = 3.0  # one `AT` while checking whether the modem lives
    probe_tries: int = 3
    reset_wait: float = 15.0  # after the reset command, before reopening the port
    busy_wait: float = 60.0  # how long to keep asking a busy SIM (+CME ERROR: 14/515)
    busy_delay: tuple[float, float] = (1.0, 8.0)  # first and longest pause between asks
    down_delay: tuple[float, float] = (2.0, 60.0)  # back-off while the port is down
    reset_every: int = 5  # while down, send the reset command again every N attempts
    send_retries: int = 3  # temporary +CMS errors, same part, same modem
    ambiguous_retries: int = 1  # +CMS ERROR: 500 and other unclear answers
    retry_delay: tuple[float, float] = (2.0, 30.0)
    handler_retries: int = 5  # a direct +CMT/+CDS whose handler fails (nothing to re-read)
    settle_time: float = 0.3  # how long an OK may trail an OK-less reply (Wavecom +CPIN)
    quiet_time: float = 0.2  # silence that ends a resync after a command was given up


class InitError(Exception):
    """The modem answers but cannot be used yet (SIM missing, locked, PIN wrong)."""


_MR = re.compile(r"^\s*(\d+)")


def dbm_from_csq(rssi: int) -> int | None:
    """`+CSQ: <rssi>` (0-31, 99 unknown) in dBm (27.007 §8.5)."""
    if not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


def registration_name(stat: int) -> str:
    """<stat> of +CREG/+CGREG/+CEREG as a word."""
    if stat in (1, 6, 9):  # home; SMS-only home; CSFB not preferred, home
        return "home"
    if stat in (5, 7, 10):
        return "roaming"
    return {0: "unregistered", 2: "searching", 3: "denied"}.get(stat, "unknown")


def _registered(name: str | None) -> bool:
    return name in ("home", "roaming")


def parse_registration(reply: Reply, prefix: str) -> int | None:
    """The <stat> of a `+CREG: <n>,<stat>[,...]` reply."""
    args = reply.first(prefix)
    if args is None:
        return None
    fields = split_fields(args)
    value = fields[1] if len(fields) >= 2 else fields[0]
    return int(value) if value.isdigit() else None


def parse_csq(reply: Reply) -> int | None:
    args = reply.first("+CSQ")
    if args is None:
        return None
    value = split_fields(args)[0]
    return dbm_from_csq(int(value)) if value.isdigit() else None


def parse_storages(reply: Reply) -> list[list[str]]:
    """`+CPMS: ("SM","ME"),("SM","ME"),("SM")` as a list per memory slot."""
    args = reply.first("+CPMS") or ""
    groups = re.findall(r"\(([^)]*)\)", args)
    if not groups:  # some firmwares leave the parentheses out for a single list
        groups = [args]
    return [[unquote(v).upper() for v in split_fields(g) if v] for g in groups]


def choose_storage(options: list[list[str]]) -> str | None:
    """The preferred storage every slot (read, write, receive) offers."""
    if not options:
        return None
    common = set(options[0]).intersection(*options[1:])
    for name in STORAGE_PREFERENCE:
        if name in common:
            return name
    return sorted(common)[0] if common else None


def normalise_iccid(raw: str) -> str | None:
    """An ICCID from any vendor's answer: quotes, `F` padding and swapped nibbles undone."""
    value = unquote(raw.split(",")[-1] if raw.count(",") >= 2 else raw).upper().rstrip("F")
    if not value or not value.isalnum():
        return None
    # ^ICCID (Huawei) and +CRSM give the SIM's raw bytes: every nibble pair swapped.
    if value.startswith("98") and len(value) % 2 == 0:
        swapped = "".join(value[i + 1] + value[i] for i in range(0, len(value), 2))
        value = swapped.rstrip("F")
    if not value.isdigit() or not 18 <= len(value) <= 22:
        return None
    return value


def _digits(reply: Reply, prefix: str, low: int, high: int) -> str | None:
    """The first run of `low`-`high` digits in a reply (bare or after `prefix:`)."""
    candidates = [unquote(line.args) for line in reply.with_prefix(prefix)] + reply.texts
    for candidate in candidates:
        match = re.search(rf"\b(\d{{{low},{high}}})\b", candidate)
        if match:
            return match.group(1)
    return None


def parse_operator(reply: Reply) -> str | None:
    """The operator name of `+COPS: <mode>,<format>,"<oper>"[,<act>]`."""
    args = reply.first("+COPS")
    if args is None:
        return None
    fields = split_fields(args)
    return unquote(fields[2]) or None if len(fields) >= 3 else None


def parse_smsc(reply: Reply) -> str | None:
    args = reply.first("+CSCA")
    if args is None:
        return None
    number = unquote(split_fields(args)[0])
    return number or None


def decode_ussd(text: str, dcs: int | None) -> str:
    """A `+CUSD` string: UCS-2 comes as hex on most modems whatever AT+CSCS says."""
    looks_hex = len(text) % 4 == 0 and bool(re.fullmatch(r"[0-9A-Fa-f]+", text))
    if looks_hex and dcs is not None and (dcs & 0x0C == 0x08 or dcs == 0x48):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return bytes.fromhex(text).decode("utf-16-be")
    return text


def _is_busy(reply: Reply) -> bool:
    if reply.status is Status.CME_ERROR:
        return reply.code in CME_BUSY
    if reply.status is Status.CMS_ERROR:
        return reply.code in CMS_BUSY
    return False


def _error_text(reply: Reply) -> str:
    if reply.status is Status.CMS_ERROR:
        return describe_cms(reply.code)
    if reply.status is Status.CME_ERROR:
        return describe_cme(reply.code)
    return reply.final or reply.status.value


class Modem:
    """One modem on one port, from power-on to unplug and back."""

    def __init__(
        self,
        port: AgentPort,
        *,
        command_timeout: float = 10.0,
        send_timeout: float = 60.0,
        on_inbound: InboundHandler,
        on_report: ReportHandler,
        on_state: StateHandler,
        timings: ModemTimings | None = None,
        opener: Opener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.name = port.name
        self._command_timeout = command_timeout
        self._send_timeout = send_timeout
        self._on_inbound = on_inbound
        self._on_report = on_report
        self._on_state = on_state
        self.timings = timings or ModemTimings()
        self._opener: Opener = opener or _open
        self._rng = rng or random.Random()
        self._info = ModemInfo()
        self._channel: AtChannel | None = None
        self._storage: str | None = None  # mem1/2/3 chosen at init
        self._mem1: str | None = None  # what AT+CPMS last selected for reading; None: unknown
        self._storages: list[list[str]] = []
        self._reports: ReportsMode = "none"
        self._phase2plus = False  # +CSMS service 1: +CMT/+CDS need +CNMA
        self._cmms_supported = True
        self._iccid_command: str | None = None
        self._pin_rejected = False  # never try a wrong PIN twice: three lock the SIM
        self._concat = ConcatReferences(self._rng)
        self._undecodable: dict[tuple[str, int], str] = {}  # kept on the SIM, not retried
        self._work: asyncio.Queue[tuple[str, str, int, Urc | None]] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._ussd_lock = asyncio.Lock()
        self._ussd: asyncio.Future[Urc] | None = None
        self._trouble = asyncio.Event()  # a command timed out: is the modem still there?
        self._reinit = asyncio.Event()  # the modem rebooted on its own (RDY)
        self._poll_now = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False

    # --- state ----------------------------------------------------------------------------

    @property
    def info(self) -> ModemInfo:
        return self._info

    @property
    def ready(self) -> bool:
        """Up, and not known to be off the network: it can take a send now."""
        info = self._info
        if info.status is not ModemStatus.UP:
            return False
        return info.registration is None or info.registration in ("home", "roaming", "unknown")

    def _update(self, **changes: object) -> None:
        info = dataclasses.replace(self._info, **changes)  # type: ignore[arg-type]
        if info != self._info:
            self._info = info
            try:
                self._on_state(info)
            except Exception:
                log.exception("%s: state handler failed", self.name)

    def _down(self, error: str) -> None:
        if self._info.status is not ModemStatus.DOWN or self._info.last_error != error:
            log.warning("%s: down: %s", self.name, error)
        self._update(status=ModemStatus.DOWN, last_error=error)

    # --- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open, initialise and keep the modem healthy until cancelled or closed."""
        self._run_task = asyncio.current_task()
        t = self.timings
        attempts = 0
        delay = t.down_delay[0]
        up = False
        try:
            while not self._closed:
                if not up:
                    up = await self._bring_up(reset=attempts > 0 and attempts % t.reset_every == 0)
                    if not up:
                        attempts += 1
                        await asyncio.sleep(delay * (0.75 + self._rng.random() / 2))
                        delay = min(delay * 2, t.down_delay[1])
                        continue
                    attempts, delay = 0, t.down_delay[0]
                problem = await self._serve()
                if problem == "unresponsive":
                    up = await self._recover()
                    if not up:
                        attempts += 1  # the ladder ended with a reset: back off, then retry
                        await asyncio.sleep(delay)
                    continue
                up = False
                if problem == "lost":
                    self._down("port lost")
                    await self._drop_channel()  # reopened at once: a TCP reset is often brief
                elif problem == "crashed":
                    await asyncio.sleep(t.down_delay[0])  # a bug must not spin the loop
                # "reinit": the modem restarted on its own; initialise it again.
        finally:
            await self._drop_channel()
            if self._info.status is not ModemStatus.DOWN:
                self._update(status=ModemStatus.DOWN, last_error="closed")

    async def close(self) -> None:
        """Stop `run()` and release the port."""
        self._closed = True
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_channel()

    async def _bring_up(self, *, reset: bool = False) -> bool:
        """Open the port if needed, make sure the modem answers, initialise it."""
        try:
            if self._channel is None or self._channel.closed:
                await self._open()
            if reset:
                await self._reset()
            if not await self._probe():
                await self._drop_channel()
                self._down("no answer to AT")
                return False
            await self._initialise()
            return True
        except TransportError as exc:
            await self._drop_channel()
            self._down(f"cannot open {self.port.device}: {exc}")
        except InitError as exc:
            self._down(str(exc))
        except AtTimeout as exc:
            self._down(f"no answer during initialisation: {exc}")
        except AtClosed:
            await self._drop_channel()
            self._down("port lost during initialisation")
        return False

    async def _open(self) -> None:
        await self._drop_channel()
        transport = await self._opener(self.port.device, self.port.baudrate)
        channel = AtChannel(
            transport,
            on_urc=self._on_urc,
            name=self.name,
            settle_time=self.timings.settle_time,
            quiet_time=self.timings.quiet_time,
        )
        channel.start()
        self._channel = channel
        log.info("%s: opened %s", self.name, self.port.device)

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _probe(self) -> bool:
        """`AT`, a few times: does the modem answer at all?"""
        for _ in range(self.timings.probe_tries):
            try:
                await self._at("AT", wait=self.timings.probe_timeout)
                return True
            except AtTimeout:
                continue
        return False

    async def _serve(self) -> Problem:
        """Poll, sweep and handle URCs until the modem goes quiet or the port goes away."""
        channel = self._channel
        assert channel is not None
        self._trouble.clear()
        self._reinit.clear()
        tasks = [
            asyncio.create_task(self._worker(), name=f"{self.name}-urc"),
            asyncio.create_task(self._poller(), name=f"{self.name}-poll"),
            asyncio.create_task(self._sweeper(), name=f"{self.name}-sweep"),
        ]
        watch: dict[asyncio.Task[object], Problem] = {
            asyncio.create_task(channel.wait_closed()): "lost",
            asyncio.create_task(self._trouble.wait()): "unresponsive",
            asyncio.create_task(self._reinit.wait()): "reinit",
        }
        try:
            done, _ = await asyncio.wait([*tasks, *watch], return_when=asyncio.FIRST_COMPLETED)
            if channel.closed:
                return "lost"
            for task, problem in watch.items():
                if task in done:
                    return problem
            for task in tasks:
                if task in done and not task.cancelled() and task.exception() is not None:
                    log.error(
                        "%s: %s failed", self.name, task.get_name(), exc_info=task.exception()
                    )
                    return "crashed"
            return "unresponsive"  # a task stopped because a command timed out
        finally:
            for task in [*tasks, *watch]:
                task.cancel()
            await asyncio.gather(*tasks, *watch, return_exceptions=True)

    async def _recover(self) -> bool:
        """The recovery ladder for a modem that stopped answering; True once it is back."""
        self._update(status=ModemStatus.INITIALISING, last_error="not answering")
        log.warning("%s: not answering; trying to recover", self.name)
        if await self._probe():
            self._update(status=ModemStatus.UP, last_error=None)
            return True  # only slow: nothing to redo
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("ESC/Ctrl-Z", self._flush),
            ("reopen", self._open),
            ("reset", self._reset),
        ]
        for step, action in steps:
            log.warning("%s: recovery: %s", self.name, step)
            try:
                await action()
                if await self._probe():
                    await self._initialise()
                    log.info("%s: recovered by %s", self.name, step)
                    return True
            except (AtError, TransportError, InitError) as exc:
                log.info("%s: recovery step %s failed: %s", self.name, step, exc)
                if isinstance(exc, AtClosed | TransportError):
                    await self._drop_channel()
        self._down("not answering after reset")
        return False

    async def _flush(self) -> None:
        if self._channel is not None:
            await self._channel.flush()

    async def _reset(self) -> None:
        """The reset command (`AT+CFUN=1,1`), then time to reboot, then the port again."""
        if self._channel is None or self._channel.closed:
            with contextlib.suppress(TransportError):
                await self._open()
        with contextlib.suppress(AtError):
            # A hung modem may still act on it without answering; don't wait long.
            await self._at(self.port.reset_command, wait=self.timings.probe_timeout)
        self._update(status=ModemStatus.INITIALISING, last_error="reset")
        await self._drop_channel()
        await asyncio.sleep(self.timings.reset_wait)
        await self._open()

    # --- commands -------------------------------------------------------------------------

    async def _at(
        self,
        text: str,
        *,
        wait: float | None = None,
        prefixes: set[str] | None = None,
        complete_on: str | None = None,
    ) -> Reply:
        channel = self._channel
        if channel is None or channel.closed:
            raise AtClosed(f"{self.name}: port not open")
        try:
            return await channel.command(
                text,
                timeout=self._command_timeout if wait is None else wait,
                prefixes=prefixes,
                complete_on=complete_on,
            )
        except AtTimeout:
            self._trouble.set()
            raise

    async def _ok(self, text: str, **kwargs: float) -> Reply:
        """A command that must succeed (busy SIMs are waited for)."""
        reply = await self._at_busy(text, **kwargs)
        if not reply.ok:
            raise CommandError(text, reply)
        return reply

    async def _at_busy(self, text: str, *, wait: float | None = None) -> Reply:
        """A command, asked again with back-off while the SIM or modem says it is busy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timings.busy_wait
        delay, longest = self.timings.busy_delay
        while True:
            reply = await self._at(text, wait=wait)
            if not _is_busy(reply) or loop.time() >= deadline:
                return reply
            log.info("%s: %s: %s; asking again", self.name, text, _error_text(reply))
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    # --- initialisation -------------------------------------------------------------------

    async def _initialise(self) -> None:
        """Settings, SIM, storage, indications, identity; ends with the modem up."""
        self._update(status=ModemStatus.INITIALISING)
        await self._at("ATZ")
        await self._at("ATE0")
        await self._at("AT+CMEE=1")
        await self._unlock_sim()
        try:
            await self._ok("AT+CMGF=0")
        except CommandError as exc:
            raise InitError(f"PDU mode refused: {exc}") from None
        await self._choose_storage()
        await self._choose_indications()
        # Only matters to text-mode fallbacks of some firmwares; the PDU carries its own.
        await self._at("AT+CSMP=17,167,0,0")
        await self._read_settings()
        await self._identify()
        await self._poll()
        self._update(status=ModemStatus.UP, last_error=None)
        log.info(
            "%s: up: imsi=%s operator=%s registration=%s signal=%s",
            self.name,
            self._info.imsi,
            self._info.operator,
            self._info.registration,
            self._info.signal,
        )
        self._work.put_nowait(("sweep", "", 0, None))  # messages that came while we were away

    async def _unlock_sim(self) -> None:
        pin_sent = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timings.busy_wait
        delay, longest = self.timings.busy_delay
        while True:
            reply = await self._at("AT+CPIN?", complete_on="+CPIN")
            state = (reply.first("+CPIN") or "").upper().strip('"')
            if reply.ok and state == "READY":
                return
            if reply.status is Status.CME_ERROR and reply.code == 10:
                raise InitError("SIM not inserted")
            if reply.status is Status.CME_ERROR and reply.code in (12, 13, 15):
                raise InitError(f"SIM unusable: {describe_cme(reply.code)}")
            if state == "SIM PUK" or state == "SIM PUK2":
                raise InitError("SIM locked: PUK required")
            if state == "SIM PIN" and not pin_sent:
                if self.port.pin is None:
                    raise InitError("SIM PIN required and none is configured")
                if self._pin_rejected:
                    raise InitError("SIM PIN was rejected; fix the configured PIN")
                answer = await self._at(f'AT+CPIN="{self.port.pin}"')
                if not answer.ok:
                    if answer.status is Status.CME_ERROR and answer.code in CME_BUSY:
                        continue
                    self._pin_rejected = True
                    raise InitError(f"SIM PIN rejected: {_error_text(answer)}")
                pin_sent = True
                continue
            # Busy, NOT READY, or the PIN just went in: the SIM needs a moment.
            if loop.time() >= deadline:
                raise InitError(f"SIM not ready: {state or _error_text(reply)}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _choose_storage(self) -> None:
        reply = await self._at_busy("AT+CPMS=?")
        self._storages = parse_storages(reply) if reply.ok else []
        storage = choose_storage(self._storages) or "SM"
        chosen = await self._at_busy(f'AT+CPMS="{storage}","{storage}","{storage}"')
        if not chosen.ok:
            chosen = await self._at_busy(f'AT+CPMS="{storage}"')
        self._storage = storage if chosen.ok else None
        self._mem1 = self._storage

    async def _choose_indications(self) -> None:
        for setting, reports in CNMI_CHOICES:
            reply = await self._at_busy(f"AT+CNMI={setting}")
            if reply.ok:
                self._reports = reports
                return
        log.warning("%s: no AT+CNMI setting accepted; relying on sweeps", self.name)
        self._reports = "none"

    async def _read_settings(self) -> None:
        reply = await self._at_busy("AT+CSCA?")
        smsc = parse_smsc(reply) if reply.ok else None
        if smsc is None and not self.port.smsc:
            log.warning("%s: no SMSC on the SIM and none configured", self.name)
        csms = await self._at("AT+CSMS?")
        service = split_fields(csms.first("+CSMS") or "0")[0]
        self._phase2plus = service == "1"
        self._update(smsc=smsc)

    async def _identify(self) -> None:
        imsi = _digits(await self._at_busy("AT+CIMI"), "+CIMI", 6, 15)
        imei = _digits(await self._at("AT+CGSN"), "+CGSN", 14, 17)
        await self._at("AT+COPS=3,0")  # operator names in long alphanumeric form
        maker = await self._at("AT+CGMI")
        model = await self._at("AT+CGMM")
        self._update(
            imsi=imsi,
            imei=imei,
            iccid=await self._read_iccid(),
            manufacturer=_first_text(maker, "+CGMI"),
            model=_first_text(model, "+CGMM"),
        )

    async def _read_iccid(self) -> str | None:
        commands: tuple[str, ...] = ICCID_COMMANDS
        if self._iccid_command is not None:
            commands = (self._iccid_command, *ICCID_COMMANDS)
        for command in commands:
            reply = await self._at(command)
            if not reply.ok:
                continue
            for line in reply.lines:
                iccid = normalise_iccid(line.args)
                if iccid is not None:
                    self._iccid_command = command
                    return iccid
        return None

    # --- health ---------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Registration (circuit and EPS), signal and operator."""
        best: str | None = None
        for command, prefix in (("AT+CREG?", "+CREG"), ("AT+CEREG?", "+CEREG")):
            reply = await self._at(command)
            stat = parse_registration(reply, prefix) if reply.ok else None
            if stat is None:
                continue
            name = registration_name(stat)
            if best is None or (_registered(name) and not _registered(best)):
                best = name
        csq = await self._at("AT+CSQ")
        if csq.ok and csq.first("+CSQ") is None and self._channel is not None:
            # OK without its +CSQ line: an earlier command's answer; get back in step.
            log.warning("%s: replies out of step; resynchronising", self.name)
            self._channel.resync()
        signal = parse_csq(csq) if csq.first("+CSQ") is not None else self._info.signal
        operator = self._info.operator
        if _registered(best):
            operator = parse_operator(await self._at("AT+COPS?")) or operator
        if best != self._info.registration:
            log.info("%s: registration %s", self.name, best)
        self._update(registration=best or "unknown", signal=signal, operator=operator)

    async def _poller(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timings.poll_interval):
                    await self._poll_now.wait()
                # A registration URC asks for an early poll, but a chatty modem must not
                # turn its URCs into a stream of queries.
                await asyncio.sleep(self.timings.urc_poll_gap)
            self._poll_now.clear()
            try:
                await self._poll()
            except AtTimeout:
                return  # _at flagged trouble; the ladder takes over
            except AtClosed:
                return

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.timings.sweep_interval)
            self._work.put_nowait(("sweep", "", 0, None))

    # --- unsolicited ----------------------------------------------------------------------

    def _on_urc(self, urc: Urc) -> None:
        """Called by the channel's reader for every URC; never blocks."""
        name = urc.name
        if name in ("+CMTI", "+CDSI"):
            fields = split_fields(urc.args)
            if len(fields) >= 2 and fields[-1].isdigit():
                memory = unquote(fields[0]).upper() or (self._storage or "SM")
                self._work.put_nowait(("read", memory, int(fields[-1]), None))
        elif name in ("+CMT", "+CDS"):
            self._work.put_nowait(("direct", name, 0, urc))
        elif name == "+CUSD":
            if self._ussd is not None and not self._ussd.done():
                self._ussd.set_result(urc)
        elif name in ("+CREG", "+CEREG", "+CGREG"):
            self._poll_now.set()  # trust our own query, not a URC that may be stale
        elif name == "^RSSI":
            value = urc.args.strip()
            if value.isdigit():
                self._update(signal=dbm_from_csq(int(value)))
        elif name == "RDY":
            log.warning("%s: modem restarted on its own", self.name)
            self._reinit.set()
        else:
            log.debug("%s: URC %s", self.name, urc.line)

    async def _worker(self) -> None:
        """Messages and reports, one at a time, in the order the modem announced them."""
        while True:
            kind, what, index, urc = await self._work.get()
            try:
                if kind == "read":
                    await self._read_stored(what, index)
                elif kind == "sweep":
                    await self._sweep()
                elif urc is not None:
                    await self._direct(urc)
            except (AtTimeout, AtClosed):
                # Put it back: after recovery the message is still on the SIM, or still
                # only in this queue (+CMT), so it must not be forgotten.
                self._requeue(kind, what, index, urc)
                return
            except AtError as exc:
                log.warning("%s: %s %s %s: %s", self.name, kind, what, index, exc)

    def _requeue(self, kind: str, what: str, index: int, urc: Urc | None) -> None:
        pending = [(kind, what, index, urc)]
        while not self._work.empty():
            pending.append(self._work.get_nowait())
        for item in pending:
            self._work.put_nowait(item)

    async def _direct(self, urc: Urc) -> None:
        """+CMT / +CDS: the PDU came with the URC; acknowledge only after the handler."""
        if urc.pdu is None:
            log.warning("%s: %s without its PDU; the sweep may find it", self.name, urc.line)
            return
        try:
            message = decode(urc.pdu)
        except PduError as exc:
            log.error("%s: undecodable %s PDU %s: %s", self.name, urc.name, urc.pdu, exc)
            return
        delay, longest = self.timings.retry_delay
        for attempt in range(self.timings.handler_retries + 1):
            try:
                await self._hand_over(message)
                break
            except Exception as exc:
                if attempt == self.timings.handler_retries:
                    if self._phase2plus:
                        # Unacknowledged, the network sends it again later.
                        log.error(
                            "%s: %s handler failed, not acknowledged: %s", self.name, urc.name, exc
                        )
                    else:
                        log.error(
                            "%s: %s handler failed; message lost: %s", self.name, urc.name, exc
                        )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
        if self._phase2plus:
            await self._at("AT+CNMA")

    async def _hand_over(self, message: Deliver | Submit | StatusReport) -> bool:
        """Give a decoded PDU to its handler; False for things we do not hand over."""
        if isinstance(message, Deliver):
            await self._on_inbound(message)
            return True
        if isinstance(message, StatusReport):
            await self._on_report(message)
            return True
        return False  # an SMS-SUBMIT someone stored: not ours to touch

    async def _use_memory(self, memory: str) -> bool:
        """Point the read/delete storage (mem1) at `memory` (e.g. "SR" for reports).

        It stays there: only reads and deletes use mem1, and each selects what it needs,
        so a run of reports costs AT+CMGR and AT+CMGD each, not two AT+CPMS besides.
        """
        if self._storage is None or memory == self._mem1:
            return True
        self._mem1 = None  # unknown until the modem answers
        reply = await self._at(f'AT+CPMS="{memory}"')
        if reply.ok:
            self._mem1 = memory
        return reply.ok

    async def _read_stored(self, memory: str, index: int) -> None:
        """+CMTI / +CDSI: read, hand over, then delete."""
        if not await self._use_memory(memory):
            log.warning("%s: cannot select storage %s for index %d", self.name, memory, index)
            return
        reply = await self._at(f"AT+CMGR={index}")
        if not reply.ok:
            return  # gone already (read by a sweep) or an invalid index
        for line in reply.with_prefix("+CMGR"):
            if line.pdu is not None:
                await self._take_stored(memory, index, line.pdu)

    async def _sweep(self) -> None:
        """Read everything in storage: URCs get lost, and a crash leaves messages behind."""
        memories = [self._storage or "SM"]
        if self._reports == "stored" and any("SR" in opts for opts in self._storages[:1]):
            memories.append("SR")
        for memory in memories:
            if not await self._use_memory(memory):
                continue
            reply = await self._at("AT+CMGL=4", wait=self._command_timeout * 3)
            if not reply.ok:
                continue
            for line in reply.with_prefix("+CMGL"):
                first = split_fields(line.args)[0]
                if line.pdu is not None and first.isdigit():
                    await self._take_stored(memory, int(first), line.pdu)

    async def _take_stored(self, memory: str, index: int, pdu: str) -> None:
        key = (memory, index)
        if self._undecodable.get(key) == pdu:
            return
        try:
            message = decode(pdu)
        except PduError as exc:
            # Left on the SIM for a person to look at, rather than deleted unread.
            self._undecodable[key] = pdu
            log.error("%s: undecodable PDU at %s %d kept: %s", self.name, memory, index, exc)
            self._update(last_error=f"undecodable SMS at {memory} {index}")
            return
        try:
            handed = await self._hand_over(message)
        except Exception as exc:
            log.warning(
                "%s: handler failed for %s %d; kept for later: %s", self.name, memory, index, exc
            )
            return
        if handed:
            reply = await self._at(f"AT+CMGD={index}")
            if not reply.ok:
                log.warning("%s: AT+CMGD=%d: %s", self.name, index, _error_text(reply))

    # --- sending --------------------------------------------------------------------------

    async def send(
        self,
        to: str,
        text: str,
        *,
        status_report: bool,
        on_part: PartHook | None = None,
    ) -> SendOutcome:
        """Send one message; `on_part(seq)` is awaited before each part's AT+CMGS, and what
        it returns (if anything) at the prompt, before the PDU is written: a failure there
        cancels the part (ESC) and propagates.

        A part retried after a definite refusal (+CMS ERROR) gets `on_part` again.
        """
        if not self.ready:
            reason = self._info.last_error or f"port {self._info.status.value}"
            if self._info.status is ModemStatus.UP:
                reason = f"not registered ({self._info.registration})"
            return SendOutcome(False, [], reason, temporary=True)
        async with self._send_lock:
            try:
                parts = encode_submit(
                    to,
                    text,
                    smsc=self.port.smsc,
                    status_report=status_report,
                    concat_reference=self._concat.take(to),
                )
            except PduError as exc:
                return SendOutcome(False, [], f"cannot encode: {exc}")
            if len(parts) > 1:
                await self._keep_link()
            results: list[PartResult] = []
            for sequence, part in enumerate(parts, start=1):
                result, failure = await self._send_part(
                    sequence, part.tpdu_length, part.pdu, on_part
                )
                if result is not None:
                    results.append(result)
                if failure is not None:
                    sent_any = any(r.error is None for r in results)
                    return dataclasses.replace(
                        failure, parts=results, temporary=failure.temporary and not sent_any
                    )
            return SendOutcome(True, results)

    async def _keep_link(self) -> None:
        # AT+CMMS=2 keeps the radio link up between parts; a modem without it just sends
        # slower, so errors only stop us asking again.
        if not self._cmms_supported:
            return
        with contextlib.suppress(AtError):
            reply = await self._at("AT+CMMS=2")
            if not reply.ok:
                self._cmms_supported = False

    async def _send_part(
        self, sequence: int, length: int, pdu: str, on_part: PartHook | None
    ) -> tuple[PartResult | None, SendOutcome | None]:
        """One part with its retries: (result, None) when sent, else (result?, failure)."""
        t = self.timings
        temporary_tries = ambiguous_tries = 0
        delay, longest = t.retry_delay
        while True:
            channel = self._channel
            if channel is None or channel.closed or self._info.status is not ModemStatus.UP:
                return None, SendOutcome(False, [], "port down", temporary=True)
            gate = await on_part(sequence) if on_part is not None else None
            try:
                reply = await channel.send_pdu(
                    length,
                    pdu,
                    prompt_timeout=t.prompt_timeout,
                    timeout=self._send_timeout,
                    gate=gate,
                )
            except NoPrompt:
                self._trouble.set()
                return None, SendOutcome(False, [], "no prompt from the modem", temporary=True)
            except (SendTimeout, SendInterrupted) as exc:
                # The PDU was written: the network may have it. Sending again could deliver
                # it twice, so the part ends here with its outcome unknown.
                if isinstance(exc, SendTimeout):
                    self._trouble.set()
                error = f"outcome unknown: {exc}"
                return PartResult(sequence=sequence, error=error), SendOutcome(False, [], error)
            except AtClosed:
                return None, SendOutcome(False, [], "port lost", temporary=True)
            if reply.ok:
                args = reply.first("+CMGS")
                match = _MR.match(args) if args is not None else None
                reference = int(match.group(1)) & 0xFF if match else None
                return PartResult(sequence=sequence, reference=reference), None
            error = _error_text(reply)
            code = reply.code if reply.status is Status.CMS_ERROR else None
            verdict = classify_cms(code) if reply.status is Status.CMS_ERROR else Verdict.AMBIGUOUS
            if verdict is Verdict.PERMANENT:
                return PartResult(sequence=sequence, error=error), SendOutcome(
                    False, [], error, temporary=False, code=code
                )
            if verdict is Verdict.TEMPORARY and temporary_tries < t.send_retries:
                temporary_tries += 1
            elif verdict is Verdict.AMBIGUOUS and ambiguous_tries < t.ambiguous_retries:
                ambiguous_tries += 1
            else:
                return PartResult(sequence=sequence, error=error), SendOutcome(
                    False, [], error, temporary=True, code=code
                )
            log.info("%s: part %d: %s; trying again in %.1fs", self.name, sequence, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    # --- USSD -----------------------------------------------------------------------------

    async def ussd(self, code: str, timeout: float) -> str:  # noqa: ASYNC109 - the caller's deadline
        """Ask the network a USSD code (`*100#`) and return its answer."""
        if self._info.status is not ModemStatus.UP:
            raise AtError(f"{self.name}: port {self._info.status.value}")
        if not re.fullmatch(r"[0-9*#+]{1,160}", code):
            raise ValueError(f"not a USSD code: {code!r}")
        async with self._ussd_lock:
            future: asyncio.Future[Urc] = asyncio.get_running_loop().create_future()
            self._ussd = future
            try:
                reply = await self._at(f'AT+CUSD=1,"{code}",15', prefixes=set())
                if not reply.ok:
                    raise CommandError("AT+CUSD", reply)
                try:
                    async with asyncio.timeout(timeout):
                        urc = await future
                except TimeoutError:
                    with contextlib.suppress(AtError):
                        await self._at("AT+CUSD=2")
                    raise AtError(f"{self.name}: no USSD answer in {timeout:g}s") from None
            finally:
                self._ussd = None
        fields = split_fields(urc.args)
        status = fields[0] if fields else ""
        if status in ("2", "4", "5") and len(fields) < 2:
            meaning = {"2": "terminated by the network", "4": "not supported", "5": "timed out"}
            raise AtError(f"USSD {meaning[status]}")
        text = unquote(fields[1]) if len(fields) > 1 else ""
        dcs = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
        if status == "1":
            # The network waits for a menu choice we will not make; end the session.
            with contextlib.suppress(AtError):
                await self._at("AT+CUSD=2")
        return decode_ussd(text, dcs)


def _first_text(reply: Reply, prefix: str) -> str | None:
    if not reply.ok:
        return None
    args = reply.first(prefix)
    if args is not None:
        return unquote(args) or None
    return reply.texts[0] if reply.texts else None


async def _open(device: str, baudrate: int) -> Transport:
    return await open_transport(device, baudrate=baudrate)
