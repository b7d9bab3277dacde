"""Sending one message through one modem: encode, AT+CMGS each part, retry what may be.

A part refused with a temporary `+CMS ERROR` is tried again on the same modem; one that
got no `>` prompt was never written and is reported temporary, so the caller may try
another port. A part whose PDU was written but whose answer never came has an unknown
outcome: it is never sent again here, since the network may have it, and the message's
result says `unknown` (SendOutcome.unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from smsgate.backoff import Backoff
from smsgate.config import AgentPort
from smsgate.contracts import OUTCOME_UNKNOWN, PartResult
from smsgate.pdu import Alphabet, PduError, SubmitPart, encode_submit

from smsgate_agent import text_sms
from smsgate_agent.at_channel import AtClosed, AtError, NoPrompt, SendInterrupted, SendTimeout
from smsgate_agent.at_parser import Status
from smsgate_agent.cms import SendErrorKind, classify_cms
from smsgate_agent.concat import ConcatReferences
from smsgate_agent.link import ModemLink, ModemStatus
from smsgate_agent.replies import error_text, message_reference
from smsgate_agent.startup import ModemSetup

log = logging.getLogger("smsgate.modem")

# Called before each part's AT+CMGS; what it returns is awaited before the PDU is written
# (at the prompt), so a bus round trip overlaps the modem's.
PartHook = Callable[[int], Awaitable[Awaitable[object] | None]]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """How a send ended: every part accepted (ok), or why not and whether to try again."""

    ok: bool
    parts: list[PartResult]  # parts handed to the modem, in order; failed ones carry `error`
    error: str | None = None
    temporary: bool = False  # nothing reached the network and a retry (elsewhere) may work
    code: int | None = None  # the +CMS ERROR code, when there was one
    # A part's PDU was written and its answer never came: the network may have it, and
    # nobody can tell. The message's result is `unknown`, not failed.
    unknown: bool = False


class Sender:
    """Sends messages through one modem, one at a time."""

    def __init__(
        self,
        link: ModemLink,
        port: AgentPort,
        setup: ModemSetup,
        *,
        send_timeout: float,
        rng: random.Random,
    ) -> None:
        self.link = link
        self.setup = setup
        self.port = port
        self.name = port.name
        self._send_timeout = send_timeout
        self._rng = rng
        self._send_lock = asyncio.Lock()
        self._cmms_supported = True
        self.concat = ConcatReferences(rng)  # per recipient of long messages

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
        if not self.link.ready:
            reason = self.link.info.last_error or f"port {self.link.info.status.value}"
            if self.link.info.status is ModemStatus.UP:
                reason = f"not registered ({self.link.info.registration})"
            return SendOutcome(False, [], reason, temporary=True)
        async with self._send_lock:
            text_mode = self.setup.text_mode
            try:
                parts = self._encode(to, text, status_report, text_mode, 0)
                if len(parts) > 1:  # only a long message carries a concatenation reference
                    reference = self.concat.take(to)
                    parts = self._encode(to, text, status_report, text_mode, reference)
            except PduError as exc:
                return SendOutcome(False, [], f"cannot encode: {exc}")
            if len(parts) > 1:
                await self._keep_link()
            texts = text_sms.text_parts(to, parts) if text_mode else []
            results: list[PartResult] = []
            for sequence, part in enumerate(parts, start=1):
                result, failure = await self._send_part(
                    sequence,
                    part.tpdu_length,
                    part.pdu,
                    on_part,
                    texts[sequence - 1] if text_mode else None,
                )
                if result is not None:
                    results.append(result)
                if failure is not None:
                    sent_any = any(r.error is None for r in results)
                    return dataclasses.replace(
                        failure, parts=results, temporary=failure.temporary and not sent_any
                    )
            return SendOutcome(True, results)

    def _encode(
        self, to: str, text: str, status_report: bool, text_mode: bool, reference: int
    ) -> list[SubmitPart]:
        parts = encode_submit(
            to,
            text,
            smsc=None if text_mode else self.port.smsc,
            status_report=status_report,
            concat_reference=reference,
        )
        if text_mode and any(text_sms.ambiguous(p) for p in parts):
            # As hex user data this GSM 7-bit part would lose a trailing '@'.
            parts = encode_submit(
                to,
                text,
                status_report=status_report,
                concat_reference=reference,
                alphabet=Alphabet.UCS2,
            )
        return parts

    async def _keep_link(self) -> None:
        # AT+CMMS=2 keeps the radio link up between parts; a modem without it just sends
        # slower, so errors only stop us asking again.
        if not self._cmms_supported:
            return
        with contextlib.suppress(AtError):
            reply = await self.link.at("AT+CMMS=2")
            if not reply.ok:
                self._cmms_supported = False

    async def _send_part(
        self,
        sequence: int,
        length: int,
        pdu: str,
        on_part: PartHook | None,
        text: text_sms.TextPart | None = None,
    ) -> tuple[PartResult | None, SendOutcome | None]:
        """One part with its retries: (result, None) when sent, else (result?, failure).

        In text mode (`text`), AT+CSMP sets the part's first octet and coding first, and
        the text (or the user data as hex) follows `AT+CMGS="<number>"`.
        """
        t = self.link.timings
        temporary_tries = ambiguous_tries = 0
        backoff = Backoff.between(t.retry_delay)
        while True:
            channel = self.link.channel
            if channel is None or channel.closed or self.link.info.status is not ModemStatus.UP:
                return None, SendOutcome(False, [], "port down", temporary=True)
            if text is not None:
                csmp = await self.link.at(text.csmp)
                if not csmp.ok:
                    error = f"{text.csmp}: {error_text(csmp)}"
                    return None, SendOutcome(False, [], error, temporary=True)
            gate = await on_part(sequence) if on_part is not None else None
            try:
                reply = await channel.send_pdu(
                    length,
                    text.payload if text is not None else pdu,
                    prompt_timeout=t.prompt_timeout,
                    timeout=self._send_timeout,
                    gate=gate,
                    command=text.command if text is not None else None,
                )
            except NoPrompt:
                self.link.trouble.set()
                return None, SendOutcome(False, [], "no prompt from the modem", temporary=True)
            except (SendTimeout, SendInterrupted) as exc:
                # The PDU was written: the network may have it. Sending again could deliver
                # it twice, so the part ends here with its outcome unknown.
                if isinstance(exc, SendTimeout):
                    self.link.trouble.set()
                error = f"{OUTCOME_UNKNOWN}: {exc}"
                return PartResult(sequence=sequence, error=error), SendOutcome(
                    False, [], error, unknown=True
                )
            except AtClosed:
                return None, SendOutcome(False, [], "port lost", temporary=True)
            if reply.ok:
                reference = message_reference(reply)
                return PartResult(sequence=sequence, reference=reference), None
            self.link.error_replies += 1
            error = error_text(reply)
            code = reply.code if reply.status is Status.CMS_ERROR else None
            verdict = (
                classify_cms(code) if reply.status is Status.CMS_ERROR else SendErrorKind.AMBIGUOUS
            )
            if verdict is SendErrorKind.PERMANENT:
                return PartResult(sequence=sequence, error=error), SendOutcome(
                    False, [], error, temporary=False, code=code
                )
            if verdict is SendErrorKind.TEMPORARY and temporary_tries < t.send_retries:
                temporary_tries += 1
            elif verdict is SendErrorKind.AMBIGUOUS and ambiguous_tries < t.ambiguous_retries:
                ambiguous_tries += 1
            else:
                return PartResult(sequence=sequence, error=error), SendOutcome(
                    False, [], error, temporary=True, code=code
                )
            delay = backoff.next()
            log.info("%s: part %d: %s; trying again in %.1fs", self.name, sequence, error, delay)
            await asyncio.sleep(delay)
