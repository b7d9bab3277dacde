"""What one port receives, made durable: SMS parts kept across restarts, joined, published.

The modem hands over each SMS (`Deliver`) and deletes it from the SIM only once
`on_inbound` returned: by then a single-part SMS is an `InboundSms` event on the bus, and
a part of a longer one is stored in the `sms_inbound_parts` bucket until its siblings come
(or it times out and is published incomplete).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from smsgate import contracts, subjects
from smsgate.pdu import Deliver

from smsgate_agent.backlog import Backlog
from smsgate_agent.publisher import Publisher
from smsgate_agent.reassembly import InboundPart, Joined, Reassembler


class Receiving:
    """One port's inbound SMS: parts stored, joined and published as events."""

    def __init__(
        self,
        name: str,
        number: int | None,
        publisher: Publisher,
        *,
        backlog: Backlog,
        imsi: Callable[[], str | None],
        reassembly_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`backlog`: where an SMS the bus cannot take now waits (on this host's disk)."""
        self.name = name
        self.number = number  # the gateway API's port number
        self.publisher = publisher
        self.backlog = backlog
        self._imsi = imsi
        self.clock = clock
        self.reassembler = Reassembler(timeout=reassembly_timeout)
        self.received = 0

    async def restore_parts(self, keys: list[str] | None = None) -> None:
        """Reload the parts of unfinished inbound messages kept across a restart.

        `keys`: the bucket's keys, listed once by the agent for all its ports (each
        listing costs the KV stream a consumer, and a stream takes 1000 at most).
        """
        kv = self.publisher.buckets.inbound_parts
        if keys is None:
            keys = await inbound_part_keys(kv)
        for key in keys:
            if not key.startswith(f"{self.name}."):
                continue
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            if entry.value:
                self.reassembler.add(msgspec.json.decode(entry.value, type=InboundPart))

    async def on_inbound(self, deliver: Deliver) -> None:
        """Called by the modem; returns only once the SMS is durable on the bus."""
        concat = deliver.concat
        part = InboundPart(
            sender=deliver.sender,
            text=deliver.text,
            smsc_time=deliver.timestamp,
            smsc=deliver.smsc,
            reference=concat.reference if concat else 0,
            total=concat.total if concat else 1,
            sequence=concat.sequence if concat else 1,
            received=self.clock(),
        )
        if part.total > 1:
            await self.publisher.buckets.inbound_parts.put(
                _part_key(self.name, part), msgspec.json.encode(part)
            )
        joined = self.reassembler.add(part)
        if joined is not None:
            await self._publish_inbound(joined)

    async def expire_parts(self) -> None:
        for joined in self.reassembler.expire(self.clock()):
            await self._publish_inbound(joined)

    async def _publish_inbound(self, joined: Joined) -> None:
        first = joined.first
        digest = hashlib.sha256(
            f"{self.name}|{first.sender}|{first.smsc_time.isoformat()}|{first.reference}|"
            f"{joined.text}".encode()
        ).hexdigest()[:20]
        await self.backlog.event(
            contracts.InboundSms(
                event_id=f"{digest}:inbound",
                port=self.name,
                port_number=self.number,
                imsi=self._imsi(),
                time=contracts.utcnow(),
                id=digest,
                sender=first.sender,
                text=joined.text,
                smsc_time=first.smsc_time,
                smsc=first.smsc,
                parts=len(joined.parts),
                complete=joined.complete,
            )
        )
        self.received += 1
        if first.total > 1:
            for part in joined.parts:
                key = _part_key(self.name, part)
                await self.publisher.remove(subjects.INBOUND_PARTS_KV_PREFIX + key)


async def inbound_part_keys(kv: KeyValue) -> list[str]:
    """Every key of the inbound-parts bucket (parts of messages not yet complete)."""
    try:
        return list(await kv.keys())
    except NoKeysError:
        return []


def _part_key(port: str, part: InboundPart) -> str:
    sender = part.sender.encode().hex()
    return f"{port}.{sender}.{part.reference}.{part.total}.{part.sequence}"
