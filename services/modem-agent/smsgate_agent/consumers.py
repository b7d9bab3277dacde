"""The agent's one durable consumer for the jobs pinned to its ports.

`SMS_SEND` is a work queue: no two consumers may filter the same subject. Each agent
keeps one consumer, `send-agent-<agent>`, whose `filter_subjects` are its ports'
`sms.send.port.<port>` (nats-server ≥ 2.10); in a cluster its Raft groups grow with the
hosts, not with the ports (bench/RESULTS.md, issue 21).

At start-up the agent makes the stream agree with the ports it holds:

- per-port consumers of earlier versions (`send-port-<port>`) for its ports are deleted:
  their jobs stay in the stream (a work queue drops only what was acked) and this
  agent's consumer delivers them, so a rolling upgrade strands nothing;
- another agent's consumer that still filters one of its ports (the port moved here,
  its old holder gone: the port's claim checked that) gives that subject up;
- its own consumer is kept if its filter is the same, else made anew. A filter that
  gains a subject cannot be updated in place: the server does not go back for the
  older jobs of a subject added to a consumer past them.

The decisions are pure (`plan`); `reconcile` carries them out over the JetStream API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError
from smsgate import subjects

log = logging.getLogger("smsgate.agent")

ATTEMPTS = 3  # an agent starting beside another that takes the same port meanwhile
# Seconds to wait for the cluster to make a consumer: with replicas = 3 it is a Raft
# group, and twenty agents starting at once queue their creates at the meta leader.
API_TIMEOUT = 30.0
# JetStream's error code for a consumer whose filter overlaps another's on a work queue.
FILTER_NOT_UNIQUE = 10100


class _Config(msgspec.Struct):
    filter_subject: str = ""
    filter_subjects: list[str] = []


class _Consumer(msgspec.Struct):
    name: str
    config: _Config


class _Page(msgspec.Struct):
    total: int = 0
    offset: int = 0
    limit: int = 0
    consumers: list[_Consumer] = []


_decode_page = msgspec.json.Decoder(_Page).decode


@dataclass(frozen=True)
class Consumer:
    """A consumer on the work queue: its name and the subjects it filters."""

    name: str
    filters: frozenset[str]


@dataclass(frozen=True)
class Plan:
    """What the stream must become for an agent to drain its ports' pinned jobs."""

    delete: tuple[str, ...] = ()  # consumers to delete
    narrow: tuple[Consumer, ...] = ()  # other agents' consumers, with what they keep
    create: bool = False  # (re)create the agent's own consumer
    keep: bool = False  # the agent's consumer is as it should be


def filters_of(ports: Iterable[str]) -> frozenset[str]:
    return frozenset(subjects.send_port(port) for port in ports)


def plan(agent: str, ports: Sequence[str], consumers: Iterable[Consumer]) -> Plan:
    """How the consumers on `SMS_SEND` must change for `agent`, holding `ports`, to drain
    their pinned jobs with one consumer."""
    mine = subjects.send_agent_consumer(agent)
    wanted = filters_of(ports)
    old_ones = {subjects.send_port_consumer(port) for port in ports}
    delete: list[str] = []
    narrow: list[Consumer] = []
    own: Consumer | None = None
    for consumer in consumers:
        if consumer.name == mine:
            own = consumer
        elif consumer.name in old_ones:
            delete.append(consumer.name)
        elif consumer.name.startswith(subjects.SEND_AGENT_CONSUMER_PREFIX):
            taken = consumer.filters & wanted
            if not taken:
                continue
            left = consumer.filters - taken
            if left:
                narrow.append(Consumer(consumer.name, left))
            else:
                delete.append(consumer.name)  # no filter would mean every subject
    if own is not None and own.filters == wanted:
        return Plan(delete=tuple(delete), narrow=tuple(narrow), keep=True)
    if own is not None:
        delete.append(own.name)
    return Plan(delete=tuple(delete), narrow=tuple(narrow), create=bool(wanted))


def consumer_config(name: str, filters: Iterable[str], *, ack_wait: float) -> ConsumerConfig:
    """Every agent consumer on the work queue is configured alike: explicit acks, no cap
    on redeliveries (the claims decide), no cap on jobs out (the agent bounds what it
    asks for, see pinned_jobs.py)."""
    listed = sorted(filters)
    return ConsumerConfig(
        durable_name=name,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=-1,
        filter_subject=listed[0] if len(listed) == 1 else None,
        filter_subjects=listed if len(listed) > 1 else None,
    )


async def consumers(nc: Client, stream: str, *, api_prefix: str = "$JS.API") -> list[Consumer]:
    """Every consumer on `stream`, page by page, with its filters."""
    found: list[Consumer] = []
    offset = 0
    while True:
        request = msgspec.json.encode({"offset": offset})
        subject = f"{api_prefix}.CONSUMER.LIST.{stream}"
        reply = await nc.request(subject, request, timeout=API_TIMEOUT)
        page = _decode_page(reply.data)
        for item in page.consumers:
            filters = set(item.config.filter_subjects)
            if item.config.filter_subject:
                filters.add(item.config.filter_subject)
            found.append(Consumer(item.name, frozenset(filters)))
        offset += len(page.consumers)
        if not page.consumers or offset >= page.total:
            return found


async def reconcile(
    nc: Client, js: JetStreamContext, agent: str, ports: Sequence[str], *, ack_wait: float
) -> str | None:
    """Make the agent's consumer filter exactly `ports`' subjects; its name (None: no ports).

    Safe to call again after a timeout: a create that did happen is found in place and
    kept."""
    overlaps = 0
    while True:
        try:
            return await _reconcile_once(nc, js, agent, ports, ack_wait=ack_wait)
        except BadRequestError as exc:
            # Another agent took one of these ports between our look and our create.
            overlaps += 1
            if exc.err_code != FILTER_NOT_UNIQUE or overlaps >= ATTEMPTS:
                raise
            log.warning("consumer of %s overlaps another agent's; looking again", agent)


async def _reconcile_once(
    nc: Client, js: JetStreamContext, agent: str, ports: Sequence[str], *, ack_wait: float
) -> str | None:
    mine = subjects.send_agent_consumer(agent)
    steps = plan(agent, ports, await consumers(nc, subjects.SEND_STREAM))
    for name in steps.delete:
        log.info("deleting consumer %s: its pinned jobs go to %s", name, mine)
        with contextlib.suppress(NotFoundError):  # gone meanwhile
            await js.delete_consumer(subjects.SEND_STREAM, name)
    for other in steps.narrow:
        log.info("consumer %s gives up the subjects of ports now on %s", other.name, agent)
        with contextlib.suppress(NotFoundError):
            config = (await js.consumer_info(subjects.SEND_STREAM, other.name)).config
            config.filter_subject = None
            config.filter_subjects = sorted(other.filters)
            await js.add_consumer(subjects.SEND_STREAM, config, timeout=API_TIMEOUT)
    if steps.keep:
        return mine
    if not steps.create:
        return None
    config = consumer_config(mine, filters_of(ports), ack_wait=ack_wait)
    await js.add_consumer(subjects.SEND_STREAM, config, timeout=API_TIMEOUT)
    return mine


async def ensure(js: JetStreamContext, name: str, ports: Sequence[str], *, ack_wait: float) -> None:
    """Make the agent's consumer if it is missing (found gone while the agent runs)."""
    try:
        await js.consumer_info(subjects.SEND_STREAM, name)
    except NotFoundError:
        log.warning("consumer %s was gone: made again", name)
        await js.add_consumer(
            subjects.SEND_STREAM,
            consumer_config(name, filters_of(ports), ack_wait=ack_wait),
            timeout=API_TIMEOUT,
        )
