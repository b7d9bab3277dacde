"""The messages on the bus: msgspec Structs encoded as JSON.

This is a public interface. Every Struct carries a schema version `v`; events carry a
`type` tag and a stable `event_id`, so a subscriber in any language can read them and
drop duplicates. Add fields with defaults; never rename or remove one within a version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from smsgate.subjects import PORT_NAME_PATTERN

SCHEMA_VERSION = 1

PortName = Annotated[str, msgspec.Meta(pattern=PORT_NAME_PATTERN, max_length=64)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    """A fresh message or event id: 32 hex digits."""
    return uuid.uuid4().hex


class _Wire(msgspec.Struct, kw_only=True, frozen=True):
    v: int = SCHEMA_VERSION


# --- work --------------------------------------------------------------------------------


class SendJob(_Wire, kw_only=True, frozen=True):
    """One message to one recipient, queued on `sms.send.any` or `sms.send.port.<port>`."""

    id: MessageId
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    text: str
    port: PortName | None = None  # pinned port, or None for any ready port
    status_report: bool = True  # ask the network for a delivery report (TP-SRR)
    user: str = ""
    caller_id: str | None = None  # the `id` the caller gave, echoed in callbacks
    reply_to: str | None = None  # inbox waiting for the result (API `timeout>0`)
    created: dt.datetime
    # A pinned job fails with `port unavailable` when its port stays down this long (s).
    port_wait: float = 300.0


# --- events ------------------------------------------------------------------------------


class SendStatus(StrEnum):
    """A send's one result. `unknown`: the message may or may not have reached the network
    and nobody who can still be asked knows (its holder was lost mid-send, or the modem
    hung after the PDU was written): SMPP's message_state UNKNOWN. Never sent again by
    surprise; a delivery report that comes later still tells the truth."""

    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class DeliveryState(StrEnum):
    DELIVERED = "delivered"  # every part reached the handset
    FAILED = "failed"  # the network gave up on a part (TP-ST says why)
    # The SMSC let the validity period run out (TP-ST 0x46), or no report came within the
    # agent's `report_timeout` (then `status_code` is 0 and `reason` says so).
    EXPIRED = "expired"
    # A report that matched no recorded message: published with everything it carries.
    UNMATCHED = "unmatched"


# How a part's `error` begins when its PDU was written and no answer came: the network may
# have it (the message's result is then `unknown`).
OUTCOME_UNKNOWN = "outcome unknown"


class PartResult(msgspec.Struct, kw_only=True, frozen=True):
    """What the modem said for one part of a message."""

    sequence: int
    reference: int | None = None  # TP-MR from `+CMGS: <mr>`; None when the modem gave none
    error: str | None = None


class _Event(_Wire, frozen=True, kw_only=True, tag_field="type"):
    event_id: str
    port: PortName
    port_number: int | None = None  # the gateway's port number (`lte-7` -> 7)
    imsi: str | None = None
    time: dt.datetime  # when the event happened


class SendResult(_Event, kw_only=True, frozen=True, tag="result"):
    """One per message: it was sent (every part accepted by the network), it failed, or its
    outcome is unknown (see SendStatus)."""

    id: MessageId
    caller_id: str | None = None
    to: str
    status: SendStatus
    # why it failed, or why its outcome is unknown: `+CMS ERROR: 38`, `interrupted`, ...
    reason: str | None = None
    parts: list[PartResult] = msgspec.field(default_factory=list)
    user: str = ""


class DeliveryReport(_Event, kw_only=True, frozen=True, tag="report"):
    """One per message that asked for a report: `delivered` once every part has reported,
    `failed` as soon as one part failed for good, `expired` when the SMSC gave up or no
    report came in time. A report that matches no message is one event of its own,
    `unmatched`, whose `id` is the report's (`r` and 20 hex digits), not a message's.

    `port`, `port_number`, `imsi` and `iccid` are the sending port and SIM; `report_port`
    is where the report was read (another port when the SIM moved).
    """

    id: MessageId
    caller_id: str | None = None
    to: str
    state: DeliveryState
    reason: str = ""  # readable TP-ST meaning, or why it expired
    status_code: int = 0  # TP-ST of the deciding part (0 for a report that never came)
    smsc_time: dt.datetime | None = None  # discharge time given by the SMSC
    user: str = ""
    # --- since the message ledger (all optional: older events lack them) ---
    iccid: str | None = None
    reference: int | None = None  # TP-MR of the deciding part, or of the unmatched report
    part: int | None = None  # which part (1-based) decided; None when none did (expired)
    part_count: int = 1  # parts of the message that carried a TP-MR and were awaited
    sent_time: dt.datetime | None = None  # when the agent sent the message (its last part)
    smsc_submit_time: dt.datetime | None = None  # TP-SCTS: when the SMSC took the part
    report_port: str | None = None  # the port that read the report (None: no report came)


class InboundSms(_Event, kw_only=True, frozen=True, tag="inbound"):
    """An SMS received on a port; concatenated parts already joined."""

    id: MessageId
    sender: str
    text: str
    smsc_time: dt.datetime  # SCTS of the first part
    smsc: str | None = None
    parts: int = 1
    complete: bool = True  # False when the reassembly timeout ran out with parts missing


class PortStatus(StrEnum):
    READY = "ready"
    BUSY = "busy"
    PARKED = "parked"
    DISABLED = "disabled"
    DOWN = "down"
    # Never published by an agent: what a reader shows while it cannot reach the bus, so
    # a last-seen state is not taken for the port's present one.
    UNKNOWN = "unknown"


class PortState(_Wire, kw_only=True, frozen=True):
    """A port's live state: the value in the `sms_ports` KV bucket."""

    port: PortName
    port_number: int | None = None
    agent: str
    device: str
    status: PortStatus
    imsi: str | None = None
    iccid: str | None = None
    imei: str | None = None
    operator: str | None = None
    signal: int | None = None  # dBm, None when unknown
    registration: str | None = None  # home | roaming | searching | denied | unknown
    sent: int = 0
    failed: int = 0
    unknown: int = 0  # sends whose outcome the modem never told (its PDU written, no answer)
    received: int = 0
    sent_today: int = 0
    daily_cap: int | None = None
    queue: int = 0
    last_error: str | None = None
    updated: dt.datetime  # when the agent wrote this state (it writes on change)
    heartbeat_interval: float = 5.0  # its agent silent for 3 intervals: the port is down
    # The agent's run that wrote it: while that run renews its lease (`sms_agents`), the
    # state holds however long ago it was written (port_liveness.py). None: written by an
    # earlier agent, which rewrites every state each heartbeat instead.
    boot: str | None = None
    # How the modem is driven: "pdu", or "text" for firmwares that refuse PDU mode.
    sms_mode: Literal["pdu", "text"] = "pdu"


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's sign of life, the value of its key in `sms_agents`: rewritten every
    heartbeat while it hears the server. It keeps the agent's send claims (see the agent's
    liveness.py) and its ports' states (port_liveness.py) standing."""

    agent: str
    boot: str  # the agent's run, new at every start
    renewed: float  # wall-clock seconds
    lease: float  # seconds the holder of a send claim counts as alive after `renewed`


class PortEvent(_Event, kw_only=True, frozen=True, tag="port"):
    """A port's state changed (up, down, registered, SIM changed, ...)."""

    change: str
    state: PortState


Event = SendResult | DeliveryReport | InboundSms | PortEvent


# --- the journal: what the history store needs beyond the events above ----------------------


class MessageQueued(_Wire, kw_only=True, frozen=True, tag_field="type", tag="queued"):
    """A message the API accepted, with its text: the first step of its history.

    Published by the API in a `QueuedBatch` with the records of the other requests it
    accepted at the same time; the job itself sits on a work queue that only agents read.
    A record alone on `sms.event.queued.<port|any>` (what earlier versions published)
    reads the same.
    """

    event_id: str  # `<id>:queued`
    id: MessageId
    to: str
    text: str
    port: str | None = None  # the pinned port, None for any
    status_report: bool = True
    user: str = ""
    caller_id: str | None = None
    time: dt.datetime  # when it was accepted (the job's `created`)


class QueuedBatch(_Wire, kw_only=True, frozen=True, tag_field="type", tag="queued_batch"):
    """The `queued` records of the messages one API process accepted together (in one turn
    of its event loop), as one message: one publish and one ack for many requests.

    Published by the API on `sms.event.journal.queued`; each request is answered only once
    both its jobs and the batch holding its records are stored.
    """

    event_id: str
    time: dt.datetime
    records: list[MessageQueued]


class MessagesWithdrawn(_Wire, kw_only=True, frozen=True, tag_field="type", tag="withdrawn"):
    """Messages whose `queued` records were stored, but whose request was refused after
    all (a job the queue did not take): the history forgets them unless a port took one.

    Published by the API on `sms.event.journal.withdrawn`.
    """

    event_id: str
    time: dt.datetime
    ids: list[MessageId]


class MessageSending(_Event, kw_only=True, frozen=True, tag="sending"):
    """A port took the message and its first part is going to the modem."""

    id: MessageId
    to: str
    agent: str = ""
    user: str = ""
    caller_id: str | None = None


# --- message status (`sms_messages` KV) ---------------------------------------------------


class MessageState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # a modem may have it: the at-most-once marker
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the send's result is `unknown` (SendStatus.UNKNOWN)
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


def result_state(status: SendStatus) -> MessageState:
    """The stored state a send result leaves its message in."""
    return _RESULT_STATES[status]


_RESULT_STATES = {
    SendStatus.SENT: MessageState.SENT,
    SendStatus.FAILED: MessageState.FAILED,
    SendStatus.UNKNOWN: MessageState.UNKNOWN,
}


def text_digest(text: str) -> str:
    """A short fingerprint of a message's text, kept in its status: a repeated id with
    another text is told from a true repeat without storing the text itself."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class MessageStatus(_Wire, kw_only=True, frozen=True):
    id: MessageId
    to: str
    state: MessageState
    port: str | None = None
    agent: str | None = None
    reason: str | None = None
    parts: list[PartResult] = msgspec.field(default_factory=list)
    delivery: DeliveryState | None = None
    caller_id: str | None = None
    user: str = ""
    created: dt.datetime
    updated: dt.datetime
    digest: str | None = None  # text_digest of the message's text


# --- control -----------------------------------------------------------------------------


class PortCommand(_Wire, kw_only=True, frozen=True):
    action: Literal["disable", "enable", "drain"]


USSD_CODE_PATTERN = r"^[0-9*#+]{1,160}$"  # what AT+CUSD may carry: *100#, *123*1#


class UssdRequest(_Wire, kw_only=True, frozen=True):
    code: Annotated[str, msgspec.Meta(pattern=USSD_CODE_PATTERN)]
    timeout: float = 30.0


class ControlReply(_Wire, kw_only=True, frozen=True):
    ok: bool
    error: str | None = None
    text: str | None = None  # USSD answer
    state: PortState | None = None


class DeadLetter(_Wire, kw_only=True, frozen=True):
    """Something that could not be handled, kept with the reason instead of dropped."""

    subject: str
    reason: str
    data: str  # the original payload (UTF-8, undecodable bytes replaced)
    time: dt.datetime


# --- codec -------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


_event_decoder = msgspec.json.Decoder(Event)


def decode(data: bytes | str, kind: type[T]) -> T:
    """Decode and validate one wire message; raises msgspec.ValidationError / DecodeError."""
    return msgspec.json.decode(data, type=kind)


def decode_event(data: bytes | str) -> Event:
    event: Event = _event_decoder.decode(data)
    return event
