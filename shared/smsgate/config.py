"""One TOML file, a section per service, decoded into msgspec Structs.

`SMSGATE_<SECTION>_<KEY>` environment variables override top-level keys of a section
(`SMSGATE_NATS_URL`, `SMSGATE_API_LISTEN`). A bad file fails at start-up with an error
that names the file, the field and the problem.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from smsgate.subjects import PORT_NAME_PATTERN, port_number

PortName = Annotated[str, msgspec.Meta(pattern=PORT_NAME_PATTERN, max_length=64)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
HOUR = 3600.0
DAY = 24 * HOUR
# With [history] off the status key is the only record of a message's id: kept this long
# at least (the default before issue 20's bus bound), so a repeated id is refused as long.
NO_HISTORY_MIN_MESSAGES_TTL = 7 * DAY
# A job whose result is settled leaves its claim and result this much past the settled
# window (liveness of its holder, see Config.settled_ttl): clock skew between hosts.
SETTLED_MARGIN = 60.0


class ConfigError(Exception):
    """The configuration is unusable; the message says where and why."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class NatsConfig(_Section):
    url: str = "nats://127.0.0.1:4222"  # several, comma-separated, for a cluster
    user: str | None = None  # user/password authentication
    password: str | None = None  # with user
    token: str | None = None  # token authentication
    creds: str | None = None  # a NATS .creds file (JWT + nkey)
    tls_ca: str | None = None  # CA to verify the server (enables TLS)
    tls_cert: str | None = None  # client certificate for mutual TLS
    tls_key: str | None = None  # its private key
    # JetStream replicas of every stream and bucket (3 in a cluster)
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    events_max_age: Seconds = 7 * DAY  # how long SMS_EVENTS keeps events
    # how long `sms_messages` keeps a message's status (then the history store answers);
    # unset: 1 h, or 7 days with [history] off (nothing else remembers a message's id)
    messages_ttl: Seconds = HOUR
    # how long the report ledger (`sms_reports`) may keep an unsettled record; every record
    # is removed at its report or at `agent.report_timeout`, which must end before this
    reports_ttl: Seconds = 4 * DAY
    send_max_msgs: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000  # queue capacity
    name: str = "smsgate"  # connection name shown in NATS monitoring
    # seconds between the client's pings; this many unanswered mean a dead connection
    # (a cut cable is noticed in seconds, not after TCP's back-off)
    ping_interval: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    max_outstanding_pings: Annotated[int, msgspec.Meta(ge=1)] = 3
    # seconds SMS_EVENTS drops an event whose id it has seen (a result published again)
    events_duplicate_window: Annotated[float, msgspec.Meta(gt=0)] = 120.0

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


class ApiUser(_Section):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # login name
    password: Annotated[str, msgspec.Meta(min_length=1)]  # "scrypt:..." or plain (warned)
    # port names this user may send from; "*" for all
    ports: list[str] = msgspec.field(default_factory=lambda: ["*"])
    token: str | None = None  # bearer token for /api/v1
    delivery_report: bool = True  # ask for delivery reports unless the request says no
    admin: bool = False  # may read every user's messages (others see only their own)


class ApiConfig(_Section):
    listen: str = "0.0.0.0:8080"  # HOST:PORT the API serves on
    http_to_sms: bool = True  # the gateway's "Enable" switch
    # answer cross-origin requests (the gateway's CORS switch); /sendsms then takes the
    # ASGI path, which costs more CPU per request than the lean one
    cors: bool = False
    # report format when a request gives none
    default_report: Literal["JSON", "String", "NO"] = "JSON"
    max_recipients: Annotated[int, msgspec.Meta(ge=1)] = 100  # phonenumbers per request
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=255)] = 10  # longest message, in SMS parts
    max_timeout: Seconds = 300.0  # cap on a request's `timeout` (seconds waited for results)
    tls_cert: str | None = None  # serve HTTPS with this certificate…
    tls_key: str | None = None  # …and key
    workers: Annotated[int, msgspec.Meta(ge=1)] = 1  # API processes sharing the port
    users: list[ApiUser] = msgspec.field(default_factory=list)
    # origins allowed when cors is on
    cors_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    # Proxies trusted for X-Forwarded-For/-Proto (comma-separated IPs or "*").
    forwarded_allow_ips: str = "127.0.0.1"
    access_log: bool = True  # written off the event loop, in batches; queries redacted
    login_max_failures: Annotated[int, msgspec.Meta(ge=1)] = 5  # per client and user
    login_block: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # doubles per further failure
    publish_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0  # wait for JetStream acks
    port_wait: Seconds = 300.0  # a job pinned to a port fails if the port stays down this long


class SendPolicy(_Section):
    """Per-SIM pacing and limits; farm defaults in [agent.policy], overrides per port."""

    min_interval: Seconds = 10.0  # operators block SIMs that send faster
    jitter: Seconds = 2.0  # random extra seconds added to each interval
    daily_cap: int | None = None  # parts per SIM per day (UTC); none = no cap
    monthly_cap: int | None = None  # parts per SIM per month
    # consecutive failures that park the port…
    park_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    park_seconds: Seconds = 300.0  # …for this long, then it is tried again


class PolicyOverride(_Section):
    min_interval: Seconds | None = None  # overrides [agent.policy] for this port
    jitter: Seconds | None = None
    daily_cap: int | None = None
    monthly_cap: int | None = None
    park_after_failures: int | None = None
    park_seconds: Seconds | None = None


class AgentPort(_Section):
    name: PortName  # unique across the farm; a subject token
    # a path, /dev/serial/by-id/…, socket://host:port or rfc2217://host:port
    device: Annotated[str, msgspec.Meta(min_length=1)]
    baudrate: Annotated[int, msgspec.Meta(gt=0)] = 115200  # serial speed
    number: int | None = None  # gateway port number; default: the name's trailing digits
    pin: str | None = None  # SIM PIN, entered when the SIM asks
    reset_command: str = "AT+CFUN=1,1"  # what the recovery ladder sends to reboot the modem
    enabled: bool = True  # false: configured but taking no work
    smsc: str | None = None  # override the SIM's service centre
    # How delivery reports reach the agent: "stored" on the SIM (+CDSI), read and deleted
    # (AT+CMGR, AT+CMGD), none lost however long the agent is away; or "direct" (+CDS with
    # the PDU, under AT+CSMS=1, acknowledged with AT+CNMA once durable): one AT command per
    # report instead of two, but one that comes while the agent is away is refused to the
    # network and the modem stops routing reports (3GPP TS 27.005): whether the SMSC sends
    # it again is the SMSC's choice, so reports can be lost. A modem refusing AT+CSMS=1
    # stays on "stored".
    report_routing: Literal["stored", "direct"] = "stored"
    # Bind by identity: `device` is then a glob (e.g. /dev/ttyUSB*) probed for this modem.
    imei: str | None = None
    iccid: str | None = None  # or the SIM's ICCID, so the name follows the SIM
    policy: PolicyOverride = msgspec.field(default_factory=PolicyOverride)

    @property
    def gateway_number(self) -> int | None:
        return self.number if self.number is not None else port_number(self.name)


class AgentConfig(_Section):
    name: str = ""  # required when ports exist
    ports: list[AgentPort] = msgspec.field(default_factory=list)
    policy: SendPolicy = msgspec.field(default_factory=SendPolicy)
    # send again a message whose agent died mid-send (default: report its outcome `unknown`,
    # reason `interrupted`: it may have reached the network)
    resend_interrupted: bool = False
    send_timeout: Seconds = 60.0  # wait for `+CMGS:` after the PDU
    command_timeout: Seconds = 10.0  # seconds an AT command may take
    # seconds between lease renewals (a port whose agent is silent for 3 is down)
    heartbeat: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    reassembly_timeout: Seconds = 600.0  # seconds to wait for the missing parts of an inbound SMS
    retries: Annotated[int, msgspec.Meta(ge=0)] = 3  # temporary errors, same port
    # A job whose agent died is redelivered after this; live agents keep theirs alive.
    ack_wait: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    # A send's claim names its agent, whose lease is renewed every heartbeat. Another agent
    # that meets the claim leaves the send to the holder while the lease is this fresh…
    lease: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    # …and while it is stale for less than this (the holder may be cut off and still
    # report); only then is the send decided `unknown` (`interrupted`) by someone else.
    holder_timeout: Seconds = 900.0
    # where the agent keeps what it could not publish yet (results, reports, inbound SMS)
    state_dir: str = ".smsgate"
    # Seconds after a send with no delivery report before its report is `expired`: the
    # 72 h validity most SMSCs give an SMS that names none (we send no TP-VP), plus 1 h.
    # Must stay below nats.reports_ttl, which keeps the ledger's records.
    report_timeout: Annotated[float, msgspec.Meta(gt=0)] = 73 * 3600.0
    # seconds a report with no sent part on record waits for one, then is `unmatched`
    report_unmatched_after: Seconds = 600.0
    # seconds between sweeps for expired reports and waiting ones
    report_sweep: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # host:port serving GET /metrics (Prometheus) and /healthz; "" for none
    metrics_listen: str = ""
    # Seconds the agent's NATS connection gathers writes before sending them in one: many
    # ports' publishes share a system call, each round trip takes up to this longer. 0: a
    # write every event-loop turn (nats-py's own).
    write_window: Annotated[float, msgspec.Meta(ge=0, le=0.1)] = 0.003


class CallbackParams(_Section):
    """The name each field takes in the callback URL."""

    phonenumber: str = "num"  # the other party's number
    port: str = "port"  # the gateway port number
    portname: str = "portname"  # the port name
    message: str = "message"  # inbound text
    time: str = "time"  # event time
    imsi: str = "imsi"  # the SIM's IMSI
    status: str = "status"  # Sent/Failed/Unknown, or the report status
    # why a send failed or its outcome is unknown, or a report is not `delivered`
    reason: str = "reason"


class Webhook(_Section):
    name: PortName  # names its durable consumer and dead-letter subject
    url: str  # where to deliver
    # gateway GET, form POST, or JSON POST of the event
    format: Literal["gateway", "form", "json"] = "gateway"
    # event types to deliver
    events: list[Literal["result", "report", "inbound", "port"]] = msgspec.field(
        default_factory=lambda: ["result", "report", "inbound"]
    )
    # port names to deliver for; "*" for all
    ports: list[str] = msgspec.field(default_factory=lambda: ["*"])
    secret: str | None = None  # HMAC-SHA256 signing key
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 8  # deliveries in flight at once
    ordered: bool = False  # keep order per port (one delivery at a time per port)
    params: CallbackParams | None = None  # gateway/form field names; None: [callback.params]
    extra: dict[str, str] = msgspec.field(default_factory=dict)  # fixed fields (gateway/form)
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # e.g. Authorization
    # None: inherit the value from [callback]
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    max_age: Seconds | None = None  # then dead-lettered (default: [callback])
    backoff_initial: Annotated[float, msgspec.Meta(gt=0)] | None = None  # default: [callback]
    backoff_max: Annotated[float, msgspec.Meta(gt=0)] | None = None  # default: [callback]
    ca_file: str | None = None  # default: [callback]
    verify: bool | None = None  # default: [callback]
    # where a new consumer begins: new events or all kept
    start: Literal["new", "all"] | None = None


class CallbackConfig(_Section):
    url: str | None = None  # the gateway-style receiver (SMS to HTTP); none = only webhooks
    # host:port serving GET /metrics (Prometheus) and /healthz; "" for none
    metrics_listen: str = ""
    inbound: bool = True  # SMS to HTTP
    results: bool = True  # AsyncSMS Result to HTTP
    reports: bool = True  # SMS Reports to HTTP
    params: CallbackParams = msgspec.field(default_factory=CallbackParams)
    extra: dict[str, str] = msgspec.field(default_factory=dict)  # "user defined" parameters
    secret: str | None = None  # HMAC-SHA256 signing key (X-Smsgate-Signature)
    ca_file: str | None = None  # CA bundle for https receivers
    verify: bool = True  # verify https certificates
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # seconds per HTTP attempt
    max_age: Seconds = DAY  # then the event goes to the dead-letter subject
    backoff_initial: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # first retry delay…
    backoff_max: Annotated[float, msgspec.Meta(gt=0)] = 300.0  # …doubling up to this
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 8  # of the gateway-compatible url
    ordered: bool = False  # keep order per port (one delivery at a time per port)
    # Where a new durable consumer starts: events from now on, or all the stream still holds.
    start: Literal["new", "all"] = "new"
    # Send-result `time`: "local" (this host), "UTC", "+08:00" or an IANA zone name.
    time_zone: str = "local"
    result_time_format: str = "%Y-%m-%d %H:%M:%S"  # strftime of `time` in send results
    smsc_time_format: str = "%Y/%m/%d %H:%M:%S"  # inbound SCTS and report discharge time
    # Overrides of the `status` texts; keys: sent, failed, unknown, delivered, undelivered,
    # expired, unmatched.
    status_text: dict[str, str] = msgspec.field(default_factory=dict)
    webhooks: list[Webhook] = msgspec.field(default_factory=list)


# The simulator's quirk profiles, one per modem family (docs/modems.md; smsgate_sim.profiles).
ModemProfile = Literal[
    "standard",
    "noprompt-space",
    "huawei",
    "wavecom",
    "quectel",
    "simcom-sim800",
    "simcom-sim7600",
    "zte",
    "sierra",
    "telit",
    "ublox",
    "fibocom",
    "cinterion",
    "neoway",
    "longsung",
    "option",
    "ai-thinker",
]


class SimConfig(_Section):
    ports: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 8  # virtual modems
    prefix: str = "lte-"  # port names are prefix + 1..N
    transport: Literal["pty", "tcp"] = "pty"  # pty devices or TCP sockets (socket://host:port)
    host: str = "127.0.0.1"  # TCP listen address
    base_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0: random free ports
    msisdn_base: str = "+15550100"  # port i gets msisdn_base + i (zero-padded to 3 digits)
    # Delays are seconds: a fixed number or a [min, max] range drawn from at random.
    part_time: float | tuple[float, float] = (1.0, 3.0)  # from the PDU to +CMGS: <mr>
    report_delay: float | tuple[float, float] = (1.0, 3.0)  # from delivery to status report
    delivery_delay: float | tuple[float, float] = (0.2, 1.0)  # from +CMGS to the recipient
    ussd_delay: float | tuple[float, float] = (0.5, 1.5)  # from AT+CUSD to +CUSD
    control: str = "127.0.0.1:0"  # HTTP control interface; "" for none
    map_file: str | None = None  # where to write {port: device}
    device_dir: str | None = None  # where the stable pty links live; default: a temp dir
    autoreply: dict[str, str] = msgspec.field(default_factory=dict)  # number -> reply text
    ussd: dict[str, str] = msgspec.field(default_factory=dict)  # USSD code -> answer
    report_status: dict[str, int] = msgspec.field(default_factory=dict)  # number -> TP-ST
    smsc: str = "+15550000000"  # the service centre the SIMs report
    operator: str = "SIMNET"  # network name in AT+COPS?
    mcc_mnc: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{5,6}$")] = "00101"  # test PLMN
    # quirk profile of every modem
    profile: ModemProfile = "standard"
    profiles: dict[str, ModemProfile] = msgspec.field(default_factory=dict)  # port name -> profile
    pin: str | None = None  # SIMs ask for this PIN after power-on
    storage_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 30  # slots per memory
    sim_ready_delay: Seconds = 0.0  # +CME ERROR: 14 for this long after power-on
    reset_time: Seconds = 1.0  # how long AT+CFUN=1,1 keeps the modem away
    reset_unplugs: bool = False  # AT+CFUN=1,1 drops the device like a USB modem does
    sent_log: Annotated[int, msgspec.Meta(ge=0)] = 1000  # sent parts kept per port
    # AT+CSMS=1: a +CMT/+CDS not acknowledged (AT+CNMA) this long is refused to the network
    # (RP-ERROR) and routing to the TE switched off (3GPP TS 27.005 +CNMA; TS 24.011 TR2M)
    cnma_timeout: Annotated[float, msgspec.Meta(gt=0)] = 12.0
    smsc_retry: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # the SMSC tries a refused one again
    seed: int | None = None  # for repeatable random delays and faults
    # Faults every modem starts with (per-port faults are set at run time).
    send_error: Annotated[int, msgspec.Meta(ge=0, le=511)] = 500  # the +CMS ERROR code
    # share of sends answered +CMS ERROR: send_error
    send_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    # chance of line noise per response
    garbage_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    # chance of an unsolicited URC per response
    urc_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0


class HistoryConfig(_Section):
    # `sqlite:///path/history.db` (relative) or `sqlite:////abs/path`, or `postgresql://…`
    url: str = "sqlite:///.smsgate/history.db"
    enabled: bool = True  # the API journals accepted messages and serves /api/v1/messages
    # messages older than this many days are pruned; 0 keeps everything
    retention_days: Annotated[float, msgspec.Meta(ge=0)] = 90.0
    prune_interval: Annotated[float, msgspec.Meta(gt=0)] = 3600.0  # seconds between prunes
    # the most events per transaction (a turn takes what has come, up to this; while
    # events keep coming, a turn starts at most every 0.1 s)
    batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4000
    pool: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4  # API connections to the store
    # host:port where `smsgate history-store` serves GET /metrics (Prometheus) and /healthz;
    # "" for none
    metrics_listen: str = ""


def parse_listen(listen: str, key: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into (host, port); a ConfigError names `key` otherwise."""
    host, _, port = listen.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):  # '²' is a digit to isdigit()
        raise ConfigError(f"{key}: must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


class Config(_Section):
    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    callback: CallbackConfig = msgspec.field(default_factory=CallbackConfig)
    sim: SimConfig = msgspec.field(default_factory=SimConfig)
    history: HistoryConfig = msgspec.field(default_factory=HistoryConfig)

    def check(self) -> Config:
        """Cross-field rules that a schema cannot say."""
        names = [p.name for p in self.agent.ports]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"agent.ports: duplicate port names {dupes}")
        if self.agent.ports and not self.agent.name:
            raise ConfigError("agent.name is required when [[agent.ports]] exist")
        users = [u.name for u in self.api.users]
        if len(set(users)) != len(users):
            raise ConfigError("api.users: duplicate user names")
        if bool(self.api.tls_cert) != bool(self.api.tls_key):
            raise ConfigError("api: tls_cert and tls_key go together")
        if self.agent.report_timeout + self.agent.report_sweep >= self.nats.reports_ttl:
            raise ConfigError(
                f"agent.report_timeout ({self.agent.report_timeout:g} s) must end before "
                f"nats.reports_ttl ({self.nats.reports_ttl:g} s) drops the ledger's records"
            )
        if self.nats.messages_ttl <= self.settled_ttl:
            raise ConfigError(
                f"nats.messages_ttl ({self.nats.messages_ttl:g} s) must outlast a settled "
                f"message's claim and result ({self.settled_ttl:g} s: agent.lease + "
                "agent.holder_timeout + 2 x agent.ack_wait + nats.events_duplicate_window "
                "+ 60): its status is what tells a late copy of the job that it was settled"
            )
        if not self.history.enabled and self.nats.messages_ttl < NO_HISTORY_MIN_MESSAGES_TTL:
            raise ConfigError(
                f"nats.messages_ttl ({self.nats.messages_ttl:g} s) is the only memory of a "
                "message's id when [history] enabled = false: set it to at least "
                f"{NO_HISTORY_MIN_MESSAGES_TTL:g} s (7 days), or turn the history on"
            )
        return self

    @property
    def settled_ttl(self) -> float:
        """Seconds a settled message keeps its send claim and decided result on the bus
        (RELIABILITY.md, "What the bus keeps per message"): as long as another agent may
        still come to decide the send (its holder's lease, then `holder_timeout`, seen
        on a copy handed out every ack_wait), as long as a job copy may be acted on
        (`ack_wait` from its receipt), and the event stream's duplicate window; plus a
        minute for clocks."""
        agent = self.agent
        return (
            agent.lease
            + agent.holder_timeout
            + 2 * agent.ack_wait
            + self.nats.events_duplicate_window
            + SETTLED_MARGIN
        )


_SECTIONS = {"nats", "api", "agent", "callback", "sim", "history"}
_ENV = re.compile(r"^SMSGATE_([A-Z]+)_([A-Z0-9_]+)$")


def _env_value(raw: str) -> Any:
    """Env values are strings; JSON lists/objects/numbers/booleans are taken as such."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay `SMSGATE_<SECTION>_<KEY>` variables onto the raw TOML data."""
    for name, raw in env.items():
        match = _ENV.match(name)
        if not match:
            continue
        section, key = match.group(1).lower(), match.group(2).lower()
        if section not in _SECTIONS:
            continue
        data.setdefault(section, {})[key] = _env_value(raw)
    return data


def _field_path(message: str) -> str:
    # msgspec says "... - at `$.agent.ports[0].name`"; show it as agent.ports[0].name
    match = re.search(r"at `\$\.?([^`]*)`", message)
    problem = message.split(" - at ")[0]
    return f"{match.group(1)}: {problem}" if match else problem


def parse(data: dict[str, Any], *, source: str = "<config>") -> Config:
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_field_path(str(exc))}") from None
    nats = data.get("nats")
    if not isinstance(nats, dict) or "messages_ttl" not in nats:
        config.nats.messages_ttl = default_messages_ttl(config)
    try:
        return config.check()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def default_messages_ttl(config: Config) -> float:
    """`nats.messages_ttl` when the file names none: an hour (the history store answers
    after it), a week with [history] off (nothing else remembers an id), and always twice
    the settled window, which it must outlast (a raised `agent.holder_timeout`, say)."""
    if not config.history.enabled:
        return NO_HISTORY_MIN_MESSAGES_TTL
    return max(HOUR, 2 * config.settled_ttl)


def load(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (or defaults when `path` is None) plus environment overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    data = apply_env(data, os.environ if env is None else env)
    return parse(data, source=source)
