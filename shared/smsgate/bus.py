"""Connect to NATS and provision the streams and KV buckets the farm shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    Header,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KeyValue

from smsgate import subjects
from smsgate.config import NatsConfig
from smsgate.protocol_reader import read_lean
from smsgate.write_window import gather_writes

log = logging.getLogger("smsgate.bus")

DEAD_MAX_AGE = 30 * 86400.0
# A retried request with the same Nats-Msg-Id inside this window is not queued twice.
SEND_DUPLICATE_WINDOW = 3600.0
SEND_MAX_CONSUMERS = 100_000  # ports in one farm, plus the shared consumer
# Headers of a KV publish that must create its key: it fails if the key exists already,
# with an `APIError` whose err_code is in WRONG_LAST_SEQUENCE.
CREATE_ONLY = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: "0"}
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream: the key exists already
# A removed key's marker (a KV delete) expires after this long (`Nats-TTL`, nats-server
# >= 2.11), instead of staying in the bucket as long as the bucket keeps keys. Every
# reader here takes a removed key and a missing one alike (a read finds nothing, a
# create succeeds, a compare-and-set on the old revision fails), so the marker only
# tells watchers that were watching at the time: a minute is plenty.
REMOVED_KEY_TTL = 60.0
MSG_TTL = "Nats-TTL"  # the header of a message's own TTL
# How long `sms_sending` keeps a claim whose message is not settled yet. A claim must
# outlive its job in SMS_SEND (a copy handed out again must find it), and a job stays
# there unacknowledged for as long as no agent can settle it: the whole farm away from
# the bus, say. Only messages in flight have such a claim; once settled, the claim and
# the result are kept `Config.settled_ttl` (their own TTL, `ttl_headers`).
UNSETTLED_CLAIM_TTL = 7 * 86400.0


def ttl_headers(ttl: float) -> dict[str, str]:
    """The headers that give one KV write its own TTL (nats-server >= 2.11)."""
    return {MSG_TTL: f"{ttl:g}s"}


def removal(revision: int | None = None) -> dict[str, str]:
    """The headers of a KV delete (publish them with an empty value to `$KV.<bucket>.<key>`)
    whose marker expires after REMOVED_KEY_TTL; with `revision`, only if the key is still
    at that revision (else an `APIError` with err_code in WRONG_LAST_SEQUENCE).
    nats-py's own delete() drops a TTL it is given."""
    headers = {KV_OP: KV_DEL, MSG_TTL: f"{REMOVED_KEY_TTL:g}s"}
    if revision is not None:
        headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(revision)
    return headers


def _tls_context(config: NatsConfig) -> ssl.SSLContext | None:
    if not (config.tls_ca or config.tls_cert):
        return None
    context = ssl.create_default_context(cafile=config.tls_ca)
    if config.tls_cert:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


CLOSE_TIMEOUT = 5.0  # seconds a stopping service gives nats-py to close


def _reset_on_close(client: Client) -> None:
    """Have the connection's socket dropped with its unsent bytes when it is closed (a
    reset, SO_LINGER 0). A connection found dead behind a cut cable is closed; without
    this the kernel keeps sending its old publishes, and they reach the server after the
    heal, later than the publisher's own retry and past any duplicate window."""
    writer = getattr(getattr(client, "_transport", None), "_io_writer", None)
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError as exc:
        log.debug("SO_LINGER not set: %s", exc)


def _client(
    config: NatsConfig,
    *,
    buffer_while_away: bool = True,
    write_window: float = 0.0,
    lean_reader: bool = False,
) -> tuple[Client, dict[str, object]]:
    """A client with our callbacks, and the connect options the config asks for.

    `buffer_while_away` False: a publish while the connection is down fails at once,
    instead of waiting in nats-py's buffer to be sent blindly after the reconnect (the
    agent retries its own publishes, and looks first whether they landed).
    `write_window` > 0: at most one write per that many seconds, carrying all published
    since the last (write_window.py).
    `lean_reader`: messages read by slicing, not nats-py's regular expressions
    (protocol_reader.py)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        if not (client.is_closed or client.is_draining):  # a deliberate close is no news
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        _reset_on_close(client)
        log.info("nats reconnected to %s", client.connected_url)

    client = Client()
    gather_writes(client, write_window)
    if lean_reader:
        read_lean(client)
    options: dict[str, object] = {
        "servers": config.servers,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 5,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        # Pings find a dead connection (a cut cable) in seconds: nats-py types the
        # interval as int, but sleeps for any number.
        "ping_interval": config.ping_interval,
        "max_outstanding_pings": config.max_outstanding_pings,
    }
    if not buffer_while_away:
        options["pending_size"] = 0
    if config.user:
        options["user"] = config.user
        options["password"] = config.password or ""
    if config.token:
        options["token"] = config.token
    if config.creds:
        options["user_credentials"] = config.creds
    tls = _tls_context(config)
    if tls is not None:
        options["tls"] = tls
    return client, options


async def connect(
    config: NatsConfig,
    *,
    name: str | None = None,
    buffer_while_away: bool = True,
    write_window: float = 0.0,
    lean_reader: bool = False,
) -> Client:
    """Connect with whatever credentials the config carries; reconnect forever."""
    client, options = _client(
        config,
        buffer_while_away=buffer_while_away,
        write_window=write_window,
        lean_reader=lean_reader,
    )
    await client.connect(name=name or config.name, **options)  # type: ignore[arg-type]
    _reset_on_close(client)
    return client


async def connect_until(
    config: NatsConfig,
    stop: asyncio.Event,
    *,
    name: str | None = None,
    buffer_while_away: bool = True,
    write_window: float = 0.0,
    lean_reader: bool = False,
) -> Client | None:
    """`connect`, but None once `stop` is set first: a service told to stop while NATS is
    unreachable exits instead of retrying forever."""
    client, options = _client(
        config,
        buffer_while_away=buffer_while_away,
        write_window=write_window,
        lean_reader=lean_reader,
    )
    connecting = asyncio.create_task(
        client.connect(name=name or config.name, **options)  # type: ignore[arg-type]
    )
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if connecting.done() and not stop.is_set():
        connecting.result()  # raises what made the connect fail
        _reset_on_close(client)
        return client
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connecting
    await close(client)
    log.info("stopped before NATS could be reached")
    return None


async def close(client: Client) -> None:
    """Close the connection in any state, the server gone first included.

    With the server already gone nats-py's close fails writing to the closed transport
    (`RuntimeError: unable to perform operation on <TCPTransport closed=True>`); a service
    that is stopping has nothing left to tell the server, so that is no error.
    """
    if client.is_closed:
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await client.close()
    except (RuntimeError, OSError, TimeoutError, NatsError) as exc:
        log.debug("nats close: %s", exc)


def stream_configs(config: NatsConfig) -> list[StreamConfig]:
    """The three streams of DESIGN.md, sized by config."""
    return [
        StreamConfig(
            name=subjects.SEND_STREAM,
            subjects=[subjects.SEND_WILDCARD],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=config.replicas,
            max_msgs=config.send_max_msgs,
            discard=DiscardPolicy.NEW,  # a full queue refuses new work instead of dropping old
            duplicate_window=SEND_DUPLICATE_WINDOW,
            # One durable consumer per port: nats-server 2.15 caps a stream that leaves
            # this unset at 1000 consumers, which a 1024-port farm passes.
            max_consumers=SEND_MAX_CONSUMERS,
        ),
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=config.replicas,
            max_age=config.events_max_age,
            duplicate_window=config.events_duplicate_window,
        ),
        StreamConfig(
            name=subjects.DEAD_STREAM,
            subjects=[subjects.DEAD_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=config.replicas,
            max_age=DEAD_MAX_AGE,
        ),
    ]


async def _ensure_stream(js: JetStreamContext, stream: StreamConfig) -> None:
    assert stream.name is not None
    try:
        await js.stream_info(stream.name)
    except NotFoundError:
        await js.add_stream(stream)
        log.debug("created stream %s", stream.name)
        return
    await js.update_stream(stream)


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        bucket = await js.key_value(config.bucket)
    except BucketNotFoundError:
        log.debug("created KV bucket %s", config.bucket)
        bucket = await js.create_key_value(config)
    await _update_bucket(js, config)
    return bucket


async def _update_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Bring a bucket made earlier up to `config`, in place: per-message TTLs allowed
    (a removed key's marker, a settled claim and a decided result carry one; a bucket
    made by an older nats-py or another tool lacks it; nats-server cannot turn it off
    again) and the TTL the config asks for now (`nats.messages_ttl` changed, say). The
    stream keeps its messages."""
    info = await js.stream_info(f"KV_{config.bucket}")
    max_age = config.ttl or 0.0
    if info.config.allow_msg_ttl and (info.config.max_age or 0.0) == max_age:
        return
    updated = await js.update_stream(info.config.evolve(allow_msg_ttl=True, max_age=max_age))
    if (info.config.max_age or 0.0) != max_age:
        log.info(
            "KV bucket %s: keys kept %gs (was %gs)",
            config.bucket,
            max_age,
            info.config.max_age or 0.0,
        )
    if not updated.config.allow_msg_ttl:  # nats-server < 2.11 ignores the setting
        log.info("KV bucket %s: this nats-server keeps delete markers (no TTLs)", config.bucket)


@dataclass
class Buckets:
    ports: KeyValue
    messages: KeyValue
    inbound_parts: KeyValue
    sending: KeyValue
    agents: KeyValue
    reports: KeyValue


def bucket_configs(config: NatsConfig) -> dict[str, KeyValueConfig]:
    """The KV buckets: port states, message states, inbound parts awaiting siblings, the
    agents' send claims and decided results (a settled message's carry a shorter TTL of
    their own) and the report ledger (its records are settled long before:
    `agent.report_timeout` must stay below the TTL)."""
    ttls = {
        subjects.PORTS_BUCKET: None,  # a port's state stays until it is replaced
        subjects.MESSAGES_BUCKET: config.messages_ttl,
        subjects.INBOUND_PARTS_BUCKET: config.events_max_age,
        subjects.SENDING_BUCKET: UNSETTLED_CLAIM_TTL,
        subjects.AGENTS_BUCKET: None,  # an agent's lease stays until it writes another
        subjects.REPORTS_BUCKET: config.reports_ttl,
    }
    return {
        name: KeyValueConfig(
            bucket=name, history=1, ttl=ttl, replicas=config.replicas, storage=StorageType.FILE
        )
        for name, ttl in ttls.items()
    }


async def provision(js: JetStreamContext, config: NatsConfig) -> Buckets:
    """Create or update every stream and KV bucket; safe to call from every service."""
    for stream in stream_configs(config):
        await _ensure_stream(js, stream)
    buckets = {name: await _ensure_bucket(js, kv) for name, kv in bucket_configs(config).items()}
    return Buckets(
        ports=buckets[subjects.PORTS_BUCKET],
        messages=buckets[subjects.MESSAGES_BUCKET],
        inbound_parts=buckets[subjects.INBOUND_PARTS_BUCKET],
        sending=buckets[subjects.SENDING_BUCKET],
        agents=buckets[subjects.AGENTS_BUCKET],
        reports=buckets[subjects.REPORTS_BUCKET],
    )
