"""The link to one modem: its channel, the commands given over it, and what is known of it.

Every part of the modem driver (start-up, the inbox, sending, USSD) talks to the modem
through one `ModemLink`: `at()` gives a command and flags trouble on a time-out (the
recovery ladder then takes over), `at_busy()` asks again while the SIM says it is busy,
and `update()` replaces the `ModemInfo` snapshot and tells the owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from smsgate.backoff import Backoff

from smsgate_agent.at_channel import AtChannel, AtClosed, AtTimeout, CommandError
from smsgate_agent.at_parser import Reply
from smsgate_agent.replies import error_text, is_busy

log = logging.getLogger("smsgate.modem")

StateHandler = Callable[["ModemInfo"], None]


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
    sms_mode: Literal["pdu", "text"] = "pdu"  # text: the firmware refuses PDU mode


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
    send_retries: int = 3  # temporary +CMS errors, same part, same modem (agent.retries)
    ambiguous_retries: int = 1  # +CMS ERROR: 500 and other unclear answers
    retry_delay: tuple[float, float] = (1.0, 30.0)  # back-off 1, 2, 4 ... s, as documented
    handler_retries: int = 5  # a direct +CMT/+CDS whose handler fails (nothing to re-read)
    settle_time: float = 0.3  # how long an OK may trail an OK-less reply (Wavecom +CPIN)
    quiet_time: float = 0.2  # silence that ends a resync after a command was given up


class ModemLink:
    """One modem's channel (None while the port is closed), its commands and its state."""

    def __init__(
        self,
        name: str,
        *,
        timings: ModemTimings,
        command_timeout: float,
        on_state: StateHandler,
    ) -> None:
        self.name = name
        self.timings = timings
        self.command_timeout = command_timeout
        self.channel: AtChannel | None = None
        self.trouble = asyncio.Event()  # a command timed out: is the modem still there?
        # Counted for the agent's metrics: commands answered with ERROR, +CMS or +CME ERROR
        # (AT+CMGS included), and recoveries after the modem was lost or stopped answering.
        self.error_replies = 0
        self.restarts = 0
        self._on_state = on_state
        self._info = ModemInfo()

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

    @property
    def open(self) -> bool:
        return self.channel is not None and not self.channel.closed

    def update(self, **changes: object) -> None:
        info = dataclasses.replace(self._info, **changes)  # type: ignore[arg-type]
        if info != self._info:
            self._info = info
            try:
                self._on_state(info)
            except Exception:
                log.exception("%s: state handler failed", self.name)

    def down(self, error: str) -> None:
        if self._info.status is not ModemStatus.DOWN or self._info.last_error != error:
            log.warning("%s: down: %s", self.name, error)
        self.update(status=ModemStatus.DOWN, last_error=error)

    # --- commands -------------------------------------------------------------------------

    async def at(
        self,
        text: str,
        *,
        wait: float | None = None,
        prefixes: set[str] | None = None,
        complete_on: str | None = None,
    ) -> Reply:
        channel = self.channel
        if channel is None or channel.closed:
            raise AtClosed(f"{self.name}: port not open")
        try:
            reply = await channel.command(
                text,
                timeout=self.command_timeout if wait is None else wait,
                prefixes=prefixes,
                complete_on=complete_on,
            )
        except AtTimeout:
            self.trouble.set()
            raise
        if not reply.ok:
            self.error_replies += 1
        return reply

    async def ok(self, text: str, **kwargs: float) -> Reply:
        """A command that must succeed (busy SIMs are waited for)."""
        reply = await self.at_busy(text, **kwargs)
        if not reply.ok:
            raise CommandError(text, reply)
        return reply

    async def at_busy(self, text: str, *, wait: float | None = None) -> Reply:
        """A command, asked again with back-off while the SIM or modem says it is busy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timings.busy_wait
        backoff = Backoff.between(self.timings.busy_delay)
        while True:
            reply = await self.at(text, wait=wait)
            if not is_busy(reply) or loop.time() >= deadline:
                return reply
            log.info("%s: %s: %s; asking again", self.name, text, error_text(reply))
            await backoff.sleep()
