"""USSD over one modem: ask a code (`*100#`), wait for the network's `+CUSD` answer."""

from __future__ import annotations

import asyncio
import contextlib
import re

from smsgate.pdu.text_mode import pack_ussd, unpack_ussd

from smsgate_agent.at_channel import AtError, CommandError
from smsgate_agent.at_parser import Reply, Urc, split_fields, unquote
from smsgate_agent.link import ModemLink, ModemStatus
from smsgate_agent.replies import decode_ussd


class Ussd:
    """One USSD session at a time; the answer arrives as a `+CUSD` URC."""

    def __init__(self, link: ModemLink) -> None:
        self.link = link
        self.name = link.name
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[Urc] | None = None
        self._packed = False  # this modem wants codes as packed GSM 7-bit hex (Huawei)

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
                reply = await self._request(code)
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
        if self._packed and dcs in (None, 0, 15):
            unpacked = unpack_ussd(text)
            if unpacked is not None:
                return unpacked  # answered the way it was asked: packed GSM 7-bit hex
        return decode_ussd(text, dcs)

    async def _request(self, code: str) -> Reply:
        """AT+CUSD with the code as text; a modem that refuses that gets it packed (and is
        asked that way from then on). Which one a modem wants is learnt, never configured."""
        forms = [pack_ussd(code), code] if self._packed else [code, pack_ussd(code)]
        reply: Reply | None = None
        for form in forms:
            reply = await self.link.at(f'AT+CUSD=1,"{form}",15', prefixes=set())
            if reply.ok:
                self._packed = form != code
                return reply
        assert reply is not None
        return reply
