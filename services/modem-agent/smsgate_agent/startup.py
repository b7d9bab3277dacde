"""Start-up, health and recovery of one modem: open, initialise, poll, climb the ladder.

`bring_up()` opens the port, checks the modem answers and initialises it: PDU mode,
the SIM (PIN, busy SIMs waited for), storage, message indications, identity, a first
poll. `recover()` is the ladder for a modem that stopped answering: AT again, ESC/Ctrl-Z,
reopen, the reset command. What initialisation chose is kept in `ModemSetup` for the
inbox, which reads stored messages from the storage chosen here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from smsgate.backoff import Backoff
from smsgate.config import AgentPort

from smsgate_agent import text_sms
from smsgate_agent.at_channel import (
    AtChannel,
    AtClosed,
    AtError,
    AtTimeout,
    UrcHandler,
)
from smsgate_agent.at_parser import Status, split_fields
from smsgate_agent.cms import CME_BUSY, describe_cme
from smsgate_agent.link import ModemLink, ModemStatus
from smsgate_agent.replies import (
    choose_storage,
    error_text,
    find_digits,
    first_text,
    normalise_iccid,
    parse_csq,
    parse_operator,
    parse_registration,
    parse_smsc,
    parse_storages,
    registered,
    registration_name,
)
from smsgate_agent.transport import Transport, TransportError


def describe(port: AgentPort) -> str:
    """How a port bound by identity is known: `imei …` or `iccid …`."""
    return f"imei {port.imei}" if port.imei else f"iccid {port.iccid}"


log = logging.getLogger("smsgate.modem")

Opener = Callable[[str, int], Awaitable[Transport]]
ReportsMode = Literal["stored", "direct", "none"]
# +CNMI combinations, best first: stored SMS (+CMTI) and stored reports (+CDSI) survive a
# crash of ours; direct reports (+CDS) are the fallback, then no reports at all. Firmwares
# that take only <bfr> 1 (Cinterion) or deliver SMS only directly, <mt> 2 (+CMT: Fibocom),
# get the same choices in those forms.
CNMI_CHOICES: tuple[tuple[str, ReportsMode], ...] = (
    ("2,1,0,2,0", "stored"),
    ("2,1,0,1,0", "direct"),
    ("2,1,0,2,1", "stored"),
    ("2,1,0,1,1", "direct"),
    ("1,1,0,2,0", "stored"),
    ("1,1,0,1,0", "direct"),
    ("2,2,0,2,0", "stored"),
    ("2,2,0,1,0", "direct"),
    ("2,2,0,1,1", "direct"),
    ("2,1,0,0,0", "none"),
    ("1,1,0,0,0", "none"),
    ("2,2,0,0,0", "none"),
    ("2,1", "none"),
)
# Every family's ICCID command, the standard ones first; +CRSM (EF_ICCID) as the last word.
ICCID_COMMANDS = (
    "AT+CCID",
    "AT+QCCID",  # Quectel
    "AT^ICCID?",  # Huawei
    "AT+ICCID",  # Telit, u-blox
    "AT+CICCID",  # SIMCom SIM7x00
    "AT#CCID",  # Telit
    "AT^SCID",  # Cinterion
    "AT!ICCID?",  # Sierra Wireless
    "AT$MYCCID",  # Neoway, Longsung
    "AT+CRSM=176,12258,0,0,10",
)


class InitError(Exception):
    """The modem answers but cannot be used yet (SIM missing, locked, PIN wrong)."""


@dataclass
class ModemSetup:
    """What initialisation chose; the inbox reads stored messages by it."""

    storage: str | None = None  # mem1/2/3 chosen at init
    storages: list[list[str]] = field(default_factory=list)  # what AT+CPMS=? offered
    mem1: str | None = None  # what AT+CPMS last selected for reading; None: unknown
    reports: ReportsMode = "none"
    phase2plus: bool = False  # +CSMS service 1: +CMT/+CDS need +CNMA
    text_mode: bool = False  # the firmware refuses PDU mode (AT+CMGF=0)


class Startup:
    """Opens, initialises, polls and recovers one modem over its `ModemLink`."""

    def __init__(
        self,
        link: ModemLink,
        port: AgentPort,
        setup: ModemSetup,
        *,
        opener: Opener,
        on_urc: UrcHandler,
        on_initialised: Callable[[], None],
    ) -> None:
        self.link = link
        self.port = port
        self.name = port.name
        self.setup = setup
        self._opener = opener
        self._on_urc = on_urc
        self._on_initialised = on_initialised  # e.g. sweep what came while we were away
        self._iccid_command: str | None = None
        self._pin_rejected = False  # never try a wrong PIN twice: three lock the SIM

    async def bring_up(self, *, reset: bool = False) -> bool:
        """Open the port if needed, make sure the modem answers, initialise it."""
        try:
            if self.link.channel is None or self.link.channel.closed:
                await self.open()
            if reset:
                await self.reset()
            if not await self.probe():
                await self.drop_channel()
                self.link.down("no answer to AT")
                return False
            await self.initialise()
            return True
        except TransportError as exc:
            await self.drop_channel()
            self.link.down(f"cannot open {self.port.device}: {exc}")
        except InitError as exc:
            self.link.down(str(exc))
        except AtTimeout as exc:
            self.link.down(f"no answer during initialisation: {exc}")
        except AtClosed:
            await self.drop_channel()
            self.link.down("port lost during initialisation")
        return False

    async def open(self) -> None:
        await self.drop_channel()
        transport = await self._opener(self.port.device, self.port.baudrate)
        channel = AtChannel(
            transport,
            on_urc=self._on_urc,
            name=self.name,
            settle_time=self.link.timings.settle_time,
            quiet_time=self.link.timings.quiet_time,
        )
        channel.start()
        self.link.channel = channel
        log.info("%s: opened %s", self.name, self.port.device)

    async def drop_channel(self) -> None:
        channel, self.link.channel = self.link.channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def probe(self) -> bool:
        """`AT`, a few times: does the modem answer at all?"""
        for _ in range(self.link.timings.probe_tries):
            try:
                await self.link.at("AT", wait=self.link.timings.probe_timeout)
                return True
            except AtTimeout:
                continue
        return False

    async def recover(self) -> bool:
        """The recovery ladder for a modem that stopped answering; True once it is back."""
        self.link.update(status=ModemStatus.INITIALISING, last_error="not answering")
        log.warning("%s: not answering; trying to recover", self.name)
        if await self.probe():
            self.link.update(status=ModemStatus.UP, last_error=None)
            return True  # only slow: nothing to redo
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("ESC/Ctrl-Z", self._flush),
            ("reopen", self.open),
            ("reset", self.reset),
        ]
        for step, action in steps:
            log.warning("%s: recovery: %s", self.name, step)
            try:
                await action()
                if await self.probe():
                    await self.initialise()
                    log.info("%s: recovered by %s", self.name, step)
                    return True
            except (AtError, TransportError, InitError) as exc:
                log.info("%s: recovery step %s failed: %s", self.name, step, exc)
                if isinstance(exc, AtClosed | TransportError):
                    await self.drop_channel()
        self.link.down("not answering after reset")
        return False

    async def _flush(self) -> None:
        if self.link.channel is not None:
            await self.link.channel.flush()

    async def reset(self) -> None:
        """The reset command (`AT+CFUN=1,1`), then time to reboot, then the port again."""
        if self.link.channel is None or self.link.channel.closed:
            with contextlib.suppress(TransportError):
                await self.open()
        with contextlib.suppress(AtError):
            # A hung modem may still act on it without answering; don't wait long.
            await self.link.at(self.port.reset_command, wait=self.link.timings.probe_timeout)
        self.link.update(status=ModemStatus.INITIALISING, last_error="reset")
        await self.drop_channel()
        await asyncio.sleep(self.link.timings.reset_wait)
        await self.open()

    async def initialise(self) -> None:
        """Settings, SIM, storage, indications, identity; ends with the modem up."""
        self.link.update(status=ModemStatus.INITIALISING)
        await self.link.at("ATZ")
        await self.link.at("ATE0")
        await self.link.at("AT+CMEE=1")
        await self._radio_on()
        await self._unlock_sim()
        await self._choose_mode()
        await self._choose_storage()
        await self._choose_indications()
        if not self.setup.text_mode:
            # Only matters to text-mode fallbacks of some firmwares; the PDU carries its own.
            await self.link.at("AT+CSMP=17,167,0,0")
        await self._read_settings()
        await self._identify()
        await self.poll()
        self.link.update(status=ModemStatus.UP, last_error=None)
        log.info(
            "%s: up: imsi=%s operator=%s registration=%s signal=%s",
            self.name,
            self.link.info.imsi,
            self.link.info.operator,
            self.link.info.registration,
            self.link.info.signal,
        )
        self._on_initialised()  # messages that came while we were away

    async def _radio_on(self) -> None:
        """Never trust the radio is on: ZTE sticks start offline (AT+CFUN=4), and a modem
        someone left in flight mode stays there. The SIM is busy for a while after."""
        reply = await self.link.at("AT+CFUN?")
        state = (reply.first("+CFUN") or "").split(",")[0].strip()
        if reply.ok and state.isdigit() and state != "1":
            log.warning("%s: radio was off (AT+CFUN=%s); switching it on", self.name, state)
            await self.link.at_busy("AT+CFUN=1", wait=self.link.timings.probe_timeout * 5)

    async def _choose_mode(self) -> None:
        """PDU mode; text mode (UCS-2, header details) for firmwares that refuse it."""
        pdu = await self.link.at_busy("AT+CMGF=0")
        if pdu.ok:
            self.setup.text_mode = False
            self.link.update(sms_mode="pdu")
            return
        text = await self.link.at_busy("AT+CMGF=1")
        if not text.ok:
            raise InitError(f"neither PDU nor text mode: AT+CMGF=0: {error_text(pdu)}")
        for command in text_sms.SETUP:
            await self.link.ok(command)
        if not self.setup.text_mode:
            log.warning("%s: PDU mode refused (%s); running in text mode", self.name, pdu.final)
        self.setup.text_mode = True
        self.link.update(sms_mode="text")

    async def check_mode(self) -> None:
        """Verify the message mode still holds (a firmware may drop it without a RDY)."""
        reply = await self.link.at("AT+CMGF?")
        value = (reply.first("+CMGF") or "").strip()
        if reply.ok and value.isdigit() and (value == "1") != self.setup.text_mode:
            log.warning("%s: AT+CMGF is %s, not what we set; setting it again", self.name, value)
            await self._choose_mode()

    async def check_routing(self) -> None:
        """Direct reports: a +CDS not acknowledged in time (we were away, or a report took
        too long to make durable) makes the modem switch routing to us off (<mt> and <ds>
        0); switch it on again, so the SMSC's retry and the next reports reach us."""
        reply = await self.link.at("AT+CNMI?")
        values = split_fields(reply.first("+CNMI") or "")
        if reply.ok and len(values) >= 4 and values[3] == "0":
            log.warning(
                "%s: the modem stopped routing reports to us; routing them again", self.name
            )
            await self._choose_indications()

    async def _unlock_sim(self) -> None:
        pin_sent = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.link.timings.busy_wait
        backoff = Backoff.between(self.link.timings.busy_delay)
        while True:
            reply = await self.link.at("AT+CPIN?", complete_on="+CPIN")
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
                answer = await self.link.at(f'AT+CPIN="{self.port.pin}"')
                if not answer.ok:
                    if answer.status is Status.CME_ERROR and answer.code in CME_BUSY:
                        continue
                    self._pin_rejected = True
                    raise InitError(f"SIM PIN rejected: {error_text(answer)}")
                pin_sent = True
                continue
            # Busy, NOT READY, or the PIN just went in: the SIM needs a moment.
            if loop.time() >= deadline:
                raise InitError(f"SIM not ready: {state or error_text(reply)}")
            await backoff.sleep()

    async def _choose_storage(self) -> None:
        reply = await self.link.at_busy("AT+CPMS=?")
        self.setup.storages = parse_storages(reply) if reply.ok else []
        storage = choose_storage(self.setup.storages) or "SM"
        chosen = await self.link.at_busy(f'AT+CPMS="{storage}","{storage}","{storage}"')
        if not chosen.ok:
            chosen = await self.link.at_busy(f'AT+CPMS="{storage}"')
        self.setup.storage = storage if chosen.ok else None
        self.setup.mem1 = self.setup.storage

    async def _choose_indications(self) -> None:
        choices = CNMI_CHOICES
        if self.port.report_routing == "direct":
            # Only with AT+CNMA: without it the modem acknowledges a report to the network
            # as it hands it over, and one we have not made durable yet is gone.
            if (await self.link.at_busy("AT+CSMS=1")).ok:
                choices = tuple(sorted(CNMI_CHOICES, key=lambda choice: choice[1] != "direct"))
            else:
                log.warning("%s: AT+CSMS=1 refused; delivery reports stay stored", self.name)
        for setting, reports in choices:
            reply = await self.link.at_busy(f"AT+CNMI={setting}")
            if reply.ok:
                self.setup.reports = reports
                return
        log.warning("%s: no AT+CNMI setting accepted; relying on sweeps", self.name)
        self.setup.reports = "none"

    async def _read_settings(self) -> None:
        reply = await self.link.at_busy("AT+CSCA?")
        smsc = parse_smsc(reply) if reply.ok else None
        if smsc is None and not self.port.smsc:
            log.warning("%s: no SMSC on the SIM and none configured", self.name)
        csms = await self.link.at("AT+CSMS?")
        service = split_fields(csms.first("+CSMS") or "0")[0]
        self.setup.phase2plus = service == "1"
        self.link.update(smsc=smsc)

    async def _identify(self) -> None:
        imsi = find_digits(await self.link.at_busy("AT+CIMI"), "+CIMI", 6, 15)
        imei = find_digits(await self.link.at("AT+CGSN"), "+CGSN", 14, 17)
        await self.link.at("AT+COPS=3,0")  # operator names in long alphanumeric form
        maker = await self.link.at("AT+CGMI")
        model = await self.link.at("AT+CGMM")
        iccid = await self._read_iccid()
        self.link.update(
            imsi=imsi,
            imei=imei,
            iccid=iccid,
            manufacturer=first_text(maker, "+CGMI"),
            model=first_text(model, "+CGMM"),
        )
        if (self.port.imei and imei != self.port.imei) or (
            self.port.iccid and iccid != self.port.iccid
        ):
            # Bound by identity, and this is another modem or SIM now (a SIM moved, the
            # devices were renumbered): let go of the device; the next open looks again.
            await self.drop_channel()
            raise InitError(f"the modem on this device is not {describe(self.port)} any more")

    async def _read_iccid(self) -> str | None:
        commands: tuple[str, ...] = ICCID_COMMANDS
        if self._iccid_command is not None:
            commands = (self._iccid_command, *ICCID_COMMANDS)
        for command in commands:
            reply = await self.link.at(command)
            if not reply.ok:
                continue
            for line in reply.lines:
                iccid = normalise_iccid(line.args)
                if iccid is not None:
                    self._iccid_command = command
                    return iccid
        return None

    async def poll(self) -> None:
        """Registration (circuit and EPS), signal and operator."""
        best: str | None = None
        for command, prefix in (("AT+CREG?", "+CREG"), ("AT+CEREG?", "+CEREG")):
            reply = await self.link.at(command)
            stat = parse_registration(reply, prefix) if reply.ok else None
            if stat is None:
                continue
            name = registration_name(stat)
            if best is None or (registered(name) and not registered(best)):
                best = name
        csq = await self.link.at("AT+CSQ")
        if csq.ok and csq.first("+CSQ") is None and self.link.channel is not None:
            # OK without its +CSQ line: an earlier command's answer; get back in step.
            log.warning("%s: replies out of step; resynchronising", self.name)
            self.link.channel.resync()
        signal = parse_csq(csq) if csq.first("+CSQ") is not None else self.link.info.signal
        operator = self.link.info.operator
        if registered(best):
            operator = parse_operator(await self.link.at("AT+COPS?")) or operator
        if best != self.link.info.registration:
            log.info("%s: registration %s", self.name, best)
        self.link.update(registration=best or "unknown", signal=signal, operator=operator)
        await self.check_mode()
        if self.setup.reports == "direct":
            await self.check_routing()
