"""Every NATS subject, stream and KV bucket, defined once.

No service spells a subject string itself: it asks this module.
"""

from __future__ import annotations

import re

PORT_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
_PORT_NAME = re.compile(PORT_NAME_PATTERN)

# Work queue: one durable consumer for `any` that every agent shares, and one per agent
# for the jobs pinned to its ports (filtered on their subjects).
SEND_STREAM = "SMS_SEND"
SEND_WILDCARD = "sms.send.>"
SEND_ANY = "sms.send.any"
SEND_ANY_CONSUMER = "send-any"
SEND_PINNED_WILDCARD = "sms.send.port.>"  # every port's pinned jobs

# Events: limits retention, read by callback, api (SSE) and anyone else.
EVENTS_STREAM = "SMS_EVENTS"
EVENTS_WILDCARD = "sms.event.>"
EVENT_KINDS = ("result", "report", "inbound", "port")
# The history journal, on the same stream: `queued` (the API accepted a message, with its
# text) and `sending` (a port took it). Not among EVENT_KINDS: callbacks and the SSE
# stream do not carry them.
QUEUED_ANY = "any"
# The API's journal: the `queued` records of the requests it accepted together, in one
# message (contracts.QueuedBatch), and the messages of refused requests it takes back.
JOURNAL_QUEUED = "sms.event.journal.queued"
JOURNAL_WITHDRAWN = "sms.event.journal.withdrawn"

# Dead letters: jobs that could not be decoded, callbacks that exhausted their retries.
DEAD_STREAM = "SMS_DEAD"
DEAD_WILDCARD = "sms.dead.>"
DEAD_SEND = "sms.dead.send"
DEAD_HISTORY = "sms.dead.history"  # events the history store could not fold in
HISTORY_CONSUMER = "history"  # the history store's durable consumer on SMS_EVENTS

# Core-NATS request/reply for run-time port control and USSD (no stream: answers are live).
CONTROL_PREFIX = "sms.control"

PORTS_BUCKET = "sms_ports"
MESSAGES_BUCKET = "sms_messages"
# Parts of concatenated inbound SMS awaiting their siblings (agent-internal, crash-safe).
INBOUND_PARTS_BUCKET = "sms_inbound_parts"
# The agents' at-most-once claims: a key is created (never overwritten) before a
# message's first part goes to a modem (agent-internal).
SENDING_BUCKET = "sms_sending"
# Each agent's lease, renewed every heartbeat while it hears the server (agent-internal).
AGENTS_BUCKET = "sms_agents"
# The delivery-report ledger: every part awaiting its status report, keyed by the SIM and
# its TP-MR, so any agent that reads the report (after a restart, or the SIM moved) can
# match it; and reports waiting for their record (agent-internal, see smsgate_agent.ledger).
REPORTS_BUCKET = "sms_reports"
# A KV put is a publish to `$KV.<bucket>.<key>`: these prefixes, plus a key, are its subject.
PORTS_KV_PREFIX = f"$KV.{PORTS_BUCKET}."
MESSAGES_KV_PREFIX = f"$KV.{MESSAGES_BUCKET}."
SENDING_KV_PREFIX = f"$KV.{SENDING_BUCKET}."
INBOUND_PARTS_KV_PREFIX = f"$KV.{INBOUND_PARTS_BUCKET}."
AGENTS_KV_PREFIX = f"$KV.{AGENTS_BUCKET}."
REPORTS_KV_PREFIX = f"$KV.{REPORTS_BUCKET}."
_KV_KEY = re.compile(r"^[-_=a-zA-Z0-9]+$")


def result_key(message_id: str) -> str:
    """The `sms_sending` key of a message's decided send result, beside its claim: created,
    never overwritten, so the first decision is the only one (agent-internal)."""
    return f"{message_key(message_id)}.result"


def check_port_name(name: str) -> str:
    """Return `name` if it is a valid port name (a single subject token), else raise ValueError."""
    if not _PORT_NAME.match(name):
        raise ValueError(f"invalid port name {name!r}: use letters, digits, '-' and '_' only")
    return name


def send_port(port: str) -> str:
    """The subject of jobs pinned to `port`."""
    return f"sms.send.port.{check_port_name(port)}"


SEND_PORT_CONSUMER_PREFIX = "send-port-"  # per-port consumers of versions before issue 21
SEND_AGENT_CONSUMER_PREFIX = "send-agent-"


def send_port_consumer(port: str) -> str:
    """The durable consumer that drained `port`'s pinned jobs before issue 21 (one per
    port): an agent deletes its ports' at start-up."""
    return f"{SEND_PORT_CONSUMER_PREFIX}{check_port_name(port)}"


def send_agent_consumer(agent: str) -> str:
    """The durable consumer that drains the jobs pinned to `agent`'s ports."""
    if not _PORT_NAME.match(agent):
        raise ValueError(
            f"invalid agent name {agent!r}: it names a JetStream consumer; "
            "use letters, digits, '-' and '_' only"
        )
    return f"{SEND_AGENT_CONSUMER_PREFIX}{agent}"


def event(kind: str, port: str) -> str:
    """The subject of one event kind (result, report, inbound, port) for `port`."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
    return f"sms.event.{kind}.{check_port_name(port)}"


def queued(port: str | None) -> str:
    """The subject of a message's `queued` record: its pinned port, or `any`."""
    return f"sms.event.queued.{check_port_name(port) if port else QUEUED_ANY}"


def sending(port: str) -> str:
    """The subject of a message's `sending` record."""
    return f"sms.event.sending.{check_port_name(port)}"


def event_filter(kind: str | None = None, port: str | None = None) -> str:
    """A subject filter over events, narrowed by kind and/or port."""
    return f"sms.event.{kind or '*'}.{port or '*'}"


def parse_event_subject(subject: str) -> tuple[str, str]:
    """Split `sms.event.<kind>.<port>` into (kind, port)."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["sms", "event"] or parts[2] not in EVENT_KINDS:
        raise ValueError(f"not an event subject: {subject!r}")
    return parts[2], parts[3]


def dead_callback(webhook: str) -> str:
    """Dead letters of one webhook."""
    return f"sms.dead.callback.{check_port_name(webhook)}"


def port_control(port: str) -> str:
    """Request subject for disable/enable/drain of `port`."""
    return f"{CONTROL_PREFIX}.port.{check_port_name(port)}"


def ussd(port: str) -> str:
    """Request subject for a USSD query on `port`."""
    return f"{CONTROL_PREFIX}.ussd.{check_port_name(port)}"


def port_number(name: str) -> int | None:
    """The gateway port number taken from a name's trailing digits (`lte-7` -> 7)."""
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else None


def message_key(message_id: str) -> str:
    """The `sms_messages` KV key of a message id; ids that are not valid keys are hex-encoded."""
    if _KV_KEY.match(message_id) and not message_id.startswith("x-"):
        return message_id
    return "x-" + message_id.encode().hex()
