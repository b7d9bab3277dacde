"""USSD over one modem: ask a code (`*100#`), wait for the network's `+CUSD` answer."""

from __future__ import annotations

import asyncio
import contextlib
import re

from smsgate_agent.at_channel import AtError, CommandError
from smsgate_agent.at_parser import Urc, split_fields, unquote
from smsgate_agent.link import ModemLink, ModemStatus
from smsgate_agent.replies import decode_ussd


class Ussd:
    """One USSD session at a time; the answer arrives as a `+CUSD` URC."""

    def __init__(self, link: ModemLink) -> None:
        self.link = link
        self.name = link.name
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[Urc] | None = None

    def answer(self, urc: Urc) -> None:
        """A `+CUSD` URC: the answer to the code asked, if one is asked."""
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(urc)

    async def ask(self, code: str, timeout: float) -> str:  # noqa: ASYNC109 - the caller's deadline
        """Ask the network a USSD code (`*100#`) and return its answer."""
        if self.link.info.status is not ModemStatus.UP:
            raise AtError(f"{self.name}: port {self.link.info.status.value}")
        if not re.fullmatch(r"[0-9*#+]{1,160}", code):
            raise ValueError(f"not a USSD code: {code!r}")
        async with self._lock:
            future: asyncio.Future[Urc] = asyncio.get_running_loop().create_future()
            self._pending = future
            try:
                reply = await self.link.at(f'AT+CUSD=1,"{code}",15', prefixes=set())
                if not reply.ok:
                    raise CommandError("AT+CUSD", reply)
                try:
                    async with asyncio.timeout(timeout):
                        urc = await future
                except TimeoutError:
                    with contextlib.suppress(AtError):
                        await self.link.at("AT+CUSD=2")
                    raise AtError(f"{self.name}: no USSD answer in {timeout:g}s") from None
            finally:
                self._pending = None
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
                await self.link.at("AT+CUSD=2")
        return decode_ussd(text, dcs)
