"""The virtual radio network: numbers, routing between SIMs, delivery and report timers,
auto-replies, and store-and-forward for SIMs that cannot take a message now."""

from __future__ import annotations

import asyncio
import collections
import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from smsgate.config import SimConfig
from smsgate.pdu import (
    Alphabet,
    Concat,
    PduError,
    Submit,
    count_segments,
    encode_deliver,
    encode_status_report,
    split_for_deliver,
)

from .stats import NetworkStats

if TYPE_CHECKING:
    from .modem import VirtualModem

# What 10086 answers in `smsgate dev`: a carrier's balance text, long enough for three parts.
CARRIER_BALANCE_REPLY = (
    "尊敬的客户，您好！截至本月1日0时，您的账户余额为86.50元，本月已产生话费23.50元，"
    "其中套餐及固定费用18.00元、短信费3.50元、上网费2.00元。您的套餐内剩余国内通用流量12.35GB、"
    "国内通话256分钟、短信180条。如需查询更多业务，请回复相应指令或拨打客服热线。感谢您的支持！"
)
USSD_BALANCE_REPLY = "Your balance is 12.50 USD, valid until 31.12.2030."
Order = Literal["normal", "reverse", "shuffle"]
Kind = Literal["deliver", "report"]
_KINDS: tuple[Kind, ...] = ("deliver", "report")
_MAX_REASSEMBLY = 10_000  # incomplete messages to auto-reply numbers kept at most


def digits(number: str) -> str:
    """A number reduced to its digits, so `+15550100001` and `15550100001` meet."""
    return "".join(c for c in number if c.isdigit())


def pick(span: float | tuple[float, float], rng: random.Random) -> float:
    """A delay from a fixed value or a (min, max) range."""
    if isinstance(span, tuple):
        low, high = span
        return low if high <= low else rng.uniform(low, high)
    return span


@dataclass(slots=True)
class Held:
    """A PDU waiting at the network until its SIM can take it (SMSC store-and-forward)."""

    pdu: str
    on_taken: Callable[[], None] | None = None


class Network:
    """Routes parts between virtual SIMs and to the outside world, and sends reports back."""

    def __init__(self, config: SimConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.stats = NetworkStats()
        self._loop = asyncio.get_running_loop()
        self._by_number: dict[str, VirtualModem] = {}
        self._held: dict[tuple[str, Kind], collections.deque[Held]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._reference = rng.randrange(256)
        self._report_status = {digits(k): v for k, v in config.report_status.items()}
        self._autoreply: dict[str, tuple[str, str]] = {}
        self._replying: dict[tuple[str, str, int, int], dict[int, str]] = {}
        for number, text in config.autoreply.items():
            self.set_autoreply(number, text)

    def attach(self, modem: VirtualModem) -> None:
        self._by_number[digits(modem.sim.msisdn)] = modem

    def modem_for(self, number: str) -> VirtualModem | None:
        """The modem whose SIM has `number`, if any."""
        return self._by_number.get(digits(number))

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    # ------------------------------------------------------------- timing

    def part_time(self) -> float:
        return pick(self.config.part_time, self.rng)

    def ussd_delay(self) -> float:
        return pick(self.config.ussd_delay, self.rng)

    def ussd_answer(self, request: str) -> str:
        return self.config.ussd.get(request, USSD_BALANCE_REPLY)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)

    @staticmethod
    def _now() -> datetime.datetime:
        return datetime.datetime.now().astimezone().replace(microsecond=0)

    # ------------------------------------------------------------- auto-replies

    @property
    def autoreplies(self) -> dict[str, str]:
        return {number: text for number, text in self._autoreply.values()}

    def set_autoreply(self, number: str, text: str | None) -> None:
        """Make `number` answer every message with `text` ({text} and {sender} are filled in)."""
        if text is None:
            self._autoreply.pop(digits(number), None)
        else:
            self._autoreply[digits(number)] = (number, text)

    def _complete_text(self, sender: str, submit: Submit) -> str | None:
        """The whole text once every part of a message to an auto-reply number is in."""
        concat = submit.concat
        if concat is None:
            return submit.text
        key = (sender, digits(submit.number), concat.reference, concat.total)
        parts = self._replying.setdefault(key, {})
        parts[concat.sequence] = submit.text
        if len(parts) < concat.total:
            if len(self._replying) > _MAX_REASSEMBLY:
                self._replying.clear()
            return None
        del self._replying[key]
        return "".join(parts[i] for i in sorted(parts))

    # ------------------------------------------------------------- sending

    def submitted(self, modem: VirtualModem, submit: Submit, mr: int) -> None:
        """A modem's part left it: deliver it after the delivery delay, report if asked."""
        sent_at = self._now()
        target = self._by_number.get(digits(submit.number))
        delay = pick(self.config.delivery_delay, self.rng)
        self._later(delay, lambda: self._arrive(modem, submit, mr, sent_at, target))

    def _arrive(
        self,
        modem: VirtualModem,
        submit: Submit,
        mr: int,
        sent_at: datetime.datetime,
        target: VirtualModem | None,
    ) -> None:
        def report() -> None:
            if submit.status_report:
                delivered_at = self._now()
                delay = pick(self.config.report_delay, self.rng)
                self._later(delay, lambda: self._report(modem, submit, mr, sent_at, delivered_at))

        if target is None:
            self.stats.delivered_outside += 1
            report()
            self._autoreply_to(modem, submit)
            return
        try:
            pdu = encode_deliver(
                modem.sim.msisdn,
                submit.text,
                timestamp=sent_at,
                smsc=self.config.smsc,
                concat=submit.concat,
                alphabet=submit.alphabet,
                port=submit.port,
            )
        except PduError:
            return  # nothing a handset could show; real networks drop it too
        self.stats.delivered_to_sims += 1
        # The report says "delivered" only once the recipient's modem has the part.
        self.hand(target, "deliver", pdu, on_taken=report)

    def _report(
        self,
        modem: VirtualModem,
        submit: Submit,
        mr: int,
        sent_at: datetime.datetime,
        delivered_at: datetime.datetime,
    ) -> None:
        pdu = encode_status_report(
            mr,
            submit.number,
            timestamp=sent_at,
            discharge_time=delivered_at,
            status=self._report_status.get(digits(submit.number), 0),
            smsc=self.config.smsc,
        )
        self.stats.reports += 1
        self.hand(modem, "report", pdu)

    def _autoreply_to(self, modem: VirtualModem, submit: Submit) -> None:
        rule = self._autoreply.get(digits(submit.number))
        if rule is None:
            return
        text = self._complete_text(modem.sim.msisdn, submit)
        if text is None:
            return
        number, template = rule
        answer = template.replace("{text}", text).replace("{sender}", modem.sim.msisdn)
        self.stats.autoreplies += 1
        delay = pick(self.config.delivery_delay, self.rng)
        self._later(delay, lambda: self._inject_reply(modem, number, answer))

    def _inject_reply(self, modem: VirtualModem, number: str, text: str) -> None:
        self.inject(modem, number, text)

    # ------------------------------------------------------------- receiving

    def inject(
        self,
        modem: VirtualModem,
        sender: str,
        text: str,
        *,
        alphabet: Alphabet | None = None,
        order: Order = "normal",
    ) -> int:
        """An SMS from `sender` to `modem`, split into concatenated parts; the part count."""
        chosen = alphabet or count_segments(text).alphabet
        texts = split_for_deliver(text, alphabet=chosen)
        self._reference = (self._reference + 1) % 256
        now, total = self._now(), len(texts)
        pdus = [
            encode_deliver(
                sender,
                part,
                timestamp=now,
                smsc=self.config.smsc,
                concat=Concat(self._reference, total, i) if total > 1 else None,
                alphabet=chosen,
            )
            for i, part in enumerate(texts, start=1)
        ]
        if order == "reverse":
            pdus.reverse()
        elif order == "shuffle":
            self.rng.shuffle(pdus)
        self.stats.injected += 1
        self.stats.injected_parts += total
        for pdu in pdus:
            self.hand(modem, "deliver", pdu)
        return total

    def hand(
        self,
        modem: VirtualModem,
        kind: Kind,
        pdu: str,
        *,
        on_taken: Callable[[], None] | None = None,
    ) -> None:
        """Give a PDU to a modem now, or hold it (in order) until the modem can take it."""
        queue = self._held.get((modem.name, kind))
        if not queue and self._take(modem, kind, pdu):
            if on_taken is not None:
                on_taken()
            return
        self._held.setdefault((modem.name, kind), collections.deque()).append(Held(pdu, on_taken))
        self.stats.held += 1

    def flush(self, modem: VirtualModem) -> None:
        """Retry what is held for `modem` (it registered, or made room in its storage)."""
        for kind in _KINDS:
            queue = self._held.get((modem.name, kind))
            while queue and self._take(modem, kind, queue[0].pdu):
                held = queue.popleft()
                self.stats.held -= 1
                if held.on_taken is not None:
                    held.on_taken()

    def retry_later(self, modem: VirtualModem, kind: Kind, pdu: str) -> None:
        """A PDU the modem refused after taking it (RP-ERROR: no AT+CNMA from its TE):
        held, and offered again after the SMSC's retry delay."""
        self._held.setdefault((modem.name, kind), collections.deque()).append(Held(pdu))
        self.stats.held += 1
        self._later(self.config.smsc_retry, lambda: self.flush(modem))

    def held(self, modem: VirtualModem) -> int:
        return sum(len(self._held.get((modem.name, k), ())) for k in _KINDS)

    @staticmethod
    def _take(modem: VirtualModem, kind: Kind, pdu: str) -> bool:
        return modem.take_deliver(pdu) if kind == "deliver" else modem.take_report(pdu)
