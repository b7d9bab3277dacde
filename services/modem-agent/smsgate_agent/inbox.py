"""What the modem received: SMS and status reports, handed over one at a time, in order.

The modem announces a message by URC: stored ones (`+CMTI`/`+CDSI`) are read by index,
direct ones (`+CMT`/`+CDS`) came with their PDU. A sweep (`AT+CMGL=4`) reads whatever is
left in storage, since URCs get lost and a crash leaves messages behind. Each becomes a
`WorkItem` on one queue, worked by one task; a stored message is deleted only after its
handler returned (durable on the bus), a direct one acknowledged (`+CNMA`) only then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from smsgate.backoff import Backoff
from smsgate.pdu import Deliver, PduError, StatusReport, Submit, decode

from smsgate_agent import text_sms
from smsgate_agent.at_channel import AtClosed, AtError, AtTimeout
from smsgate_agent.at_parser import Urc, split_fields, unquote
from smsgate_agent.link import ModemLink
from smsgate_agent.replies import error_text
from smsgate_agent.startup import ModemSetup

log = logging.getLogger("smsgate.modem")

InboundHandler = Callable[[Deliver], Awaitable[None]]
ReportHandler = Callable[[StatusReport], Awaitable[None]]
# The URCs that announce a message or a report.
STORED_URCS = frozenset({"+CMTI", "+CDSI"})
DIRECT_URCS = frozenset({"+CMT", "+CDS"})


@dataclass(frozen=True, slots=True)
class ReadStored:
    """`+CMTI`/`+CDSI`: a message or report stored at `index` of `memory`."""

    memory: str
    index: int


@dataclass(frozen=True, slots=True)
class Sweep:
    """Read everything in storage."""


@dataclass(frozen=True, slots=True)
class DirectPdu:
    """`+CMT`/`+CDS`: the PDU came with the URC and is only here."""

    urc: Urc


WorkItem = ReadStored | Sweep | DirectPdu


class Inbox:
    """The modem's received messages and reports, worked one at a time in announced order."""

    def __init__(
        self,
        link: ModemLink,
        setup: ModemSetup,
        *,
        on_inbound: InboundHandler,
        on_report: ReportHandler,
    ) -> None:
        self.link = link
        self.name = link.name
        self.setup = setup
        self._on_inbound = on_inbound
        self._on_report = on_report
        self.work: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._undecodable: dict[tuple[str, int], str] = {}  # kept on the SIM, not retried

    def sweep(self) -> None:
        """Queue a sweep of the storage."""
        self.work.put_nowait(Sweep())

    def notice(self, urc: Urc) -> None:
        """A `+CMTI`/`+CDSI`/`+CMT`/`+CDS` URC: queue what it announces."""
        if urc.name in STORED_URCS:
            fields = split_fields(urc.args)
            if len(fields) >= 2 and fields[-1].isdigit():
                memory = unquote(fields[0]).upper() or (self.setup.storage or "SM")
                self.work.put_nowait(ReadStored(memory, int(fields[-1])))
        elif urc.name in DIRECT_URCS:
            self.work.put_nowait(DirectPdu(urc))

    async def run(self) -> None:
        """Messages and reports, one at a time, in the order the modem announced them."""
        while True:
            item = await self.work.get()
            try:
                match item:
                    case ReadStored(memory, index):
                        await self._read_stored(memory, index)
                    case Sweep():
                        await self._sweep()
                    case DirectPdu(urc):
                        await self._direct(urc)
            except (AtTimeout, AtClosed):
                # Put it back: after recovery the message is still on the SIM, or still
                # only in this queue (+CMT), so it must not be forgotten.
                self._requeue(item)
                return
            except AtError as exc:
                log.warning("%s: %s: %s", self.name, item, exc)

    def _requeue(self, item: WorkItem) -> None:
        pending = [item]
        while not self.work.empty():
            pending.append(self.work.get_nowait())
        for waiting in pending:
            self.work.put_nowait(waiting)

    async def _direct(self, urc: Urc) -> None:
        """+CMT / +CDS: the PDU came with the URC; acknowledge only after the handler."""
        message: Deliver | Submit | StatusReport | None
        try:
            if self.setup.text_mode:
                message = text_sms.read_direct(urc.name, urc.args, urc.pdu)
            else:
                message = decode(urc.pdu) if urc.pdu is not None else None
        except (PduError, ValueError) as exc:
            log.error("%s: undecodable %s %s: %s", self.name, urc.name, urc.pdu, exc)
            return
        if message is None:
            log.warning("%s: %s without its PDU; the sweep may find it", self.name, urc.line)
            return
        backoff = Backoff.between(self.link.timings.retry_delay)
        for attempt in range(self.link.timings.handler_retries + 1):
            try:
                await self._hand_over(message)
                break
            except Exception as exc:
                if attempt == self.link.timings.handler_retries:
                    if self.setup.phase2plus:
                        # Unacknowledged, the network sends it again later.
                        log.error(
                            "%s: %s handler failed, not acknowledged: %s", self.name, urc.name, exc
                        )
                    else:
                        log.error(
                            "%s: %s handler failed; message lost: %s", self.name, urc.name, exc
                        )
                    return
                await backoff.sleep()
        if self.setup.phase2plus:
            await self.link.at("AT+CNMA")

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
        if self.setup.storage is None or memory == self.setup.mem1:
            return True
        self.setup.mem1 = None  # unknown until the modem answers
        reply = await self.link.at(f'AT+CPMS="{memory}"')
        if reply.ok:
            self.setup.mem1 = memory
        return reply.ok

    async def _read_stored(self, memory: str, index: int) -> None:
        """+CMTI / +CDSI: read, hand over, then delete."""
        if not await self._use_memory(memory):
            # A memory the modem names but will not select ("MT": SIM and ME together) is
            # read through the one chosen at start-up, where the message is.
            fallback = self.setup.storage or "SM"
            if fallback == memory or not await self._use_memory(fallback):
                log.warning("%s: cannot select storage %s for index %d", self.name, memory, index)
                return
            memory = fallback
        reply = await self.link.at(f"AT+CMGR={index}")
        if not reply.ok:
            return  # gone already (read by a sweep) or an invalid index
        for line in reply.with_prefix("+CMGR"):
            if self.setup.text_mode:
                await self._take_stored(memory, index, line.pdu, text=line.args)
            elif line.pdu is not None:
                await self._take_stored(memory, index, line.pdu)

    def _memories(self) -> list[str]:
        """Every memory a message or report may sit in: the chosen one first, then the
        others the modem lists for reading (reports in "SR", a second "ME"...)."""
        chosen = self.setup.storage or "SM"
        offered = self.setup.storages[0] if self.setup.storages else []
        others = [m for m in offered if m in ("SM", "ME", "SR") and m != chosen]
        return [chosen, *others]

    async def _sweep(self) -> None:
        """Read everything in storage: URCs get lost, and a crash leaves messages behind."""
        for memory in self._memories():
            if not await self._use_memory(memory):
                continue
            listing = 'AT+CMGL="ALL"' if self.setup.text_mode else "AT+CMGL=4"
            reply = await self.link.at(listing, wait=self.link.command_timeout * 3)
            if not reply.ok:
                continue
            lines = reply.with_prefix("+CMGL")
            if self.setup.text_mode:
                # The listing has no <fo>/<dcs>: read each message in full by its index.
                for index in text_sms.listed_indexes([line.args for line in lines]):
                    await self._read_stored(memory, index)
                continue
            for line in lines:
                first = split_fields(line.args)[0]
                if line.pdu is not None and first.isdigit():
                    await self._take_stored(memory, int(first), line.pdu)

    async def _take_stored(
        self, memory: str, index: int, pdu: str | None, *, text: str | None = None
    ) -> None:
        key = (memory, index)
        seen = f"{text}\n{pdu}" if text is not None else pdu or ""
        if self._undecodable.get(key) == seen:
            return
        message: Deliver | Submit | StatusReport | None = None
        try:
            if text is not None:
                message = text_sms.read_stored(text, pdu)
            elif pdu is not None:
                message = decode(pdu)
        except (PduError, ValueError) as exc:
            # Left on the SIM for a person to look at, rather than deleted unread.
            self._undecodable[key] = seen
            log.error("%s: undecodable PDU at %s %d kept: %s", self.name, memory, index, exc)
            self.link.update(last_error=f"undecodable SMS at {memory} {index}")
            return
        if message is None:
            return  # a text-mode message someone stored to send, or one without data
        try:
            handed = await self._hand_over(message)
        except Exception as exc:
            log.warning(
                "%s: handler failed for %s %d; kept for later: %s", self.name, memory, index, exc
            )
            return
        if handed:
            reply = await self.link.at(f"AT+CMGD={index}")
            if not reply.ok:
                log.warning("%s: AT+CMGD=%d: %s", self.name, index, error_text(reply))
