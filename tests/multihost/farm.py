"""A farm spread over hosts: NATS nodes, agents, api and callback, each on a host of its own.

Hosts are network namespaces on one LAN (lan.py). Every service is started as its
command line starts it, on its host: `ip netns exec NS python -m smsgate_cli agent
--config FILE`, and nats-server the same way. The simulator's modems are ptys made by the
test process: a modem hangs off its host by a serial cable, which no network cut touches.
The test process is the operator's machine on the LAN: it sends the load, runs the
callback receiver and reads the books.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.client import Client
from smsgate import contracts, subjects
from smsgate.config import ApiConfig, ApiUser, Config, NatsConfig
from smsgate.embedded import EmbeddedNats, cluster_node_config
from smsgate_callback.render import RESULT_TYPE
from smsgate_sim.simulator import Simulator

from tests.integration.callback_fixtures import Receiver, callback_config
from tests.integration.farm import agent_config, start_sim, until
from tests.multihost.lan import Host, Lan
from tests.reliability.ledger import (
    OUTSIDE,
    Deliveries,
    Load,
    Tally,
    deliveries,
    provisioned,
    stored_statuses,
    stream_events,
    stream_results,
    tally,
    until_async,
    until_results,
)
from tests.reliability.procs import Processes, Service, wait_ready

USER, PASSWORD = "loaduser", "load-pw-7d20"

# The timings every scenario runs with, scaled down from the defaults so that a partition
# "twice ack_wait" or "longer than the event stream's duplicate window" fits in a test.
ACK_WAIT = 3.0  # default 30 s
HEARTBEAT = 0.5  # default 5 s
LEASE = 2.0  # default 15 s: a holder not heard from for this long may be gone
HOLDER_TIMEOUT = 45.0  # default 900 s: then a silent holder is taken for lost
PING_INTERVAL = 1.0  # default 2 s: NATS client pings, 3 unanswered = a dead connection
DUPLICATE_WINDOW = 6.0  # default 120 s: SMS_EVENTS de-duplication


def _service_port() -> int:
    """A port on a fresh host: nothing else listens in its namespace."""
    return random.randrange(20000, 60000)


@dataclass
class Farm:
    """Hosts, what runs on them, and the test's own view of the bus."""

    lan: Lan
    workdir: Path
    procs: Processes
    sim: Simulator
    nodes: dict[str, EmbeddedNats] = field(default_factory=dict)
    nats: NatsConfig = field(default_factory=NatsConfig)
    client: Client | None = None
    receiver: Receiver | None = None

    def host(self, name: str) -> Host:
        return self.lan.hosts.get(name) or self.lan.add_host(name)

    # --- NATS -------------------------------------------------------------------------

    async def start_nats(self, hosts: Sequence[str]) -> NatsConfig:
        """One nats-server, or a cluster of one node per host (replicas = nodes)."""
        port, route = _service_port(), _service_port()
        addresses = [self.host(h).address for h in hosts]
        routes = [f"{a}:{route}" for a in addresses]
        for name, address in zip(hosts, addresses, strict=True):
            store = self.workdir / f"nats-{name}"
            store.mkdir(parents=True, exist_ok=True)
            conf = store / "server.conf"
            if len(hosts) == 1:
                conf.write_text(
                    f'server_name: "{name}"\nlisten: {address}:{port}\n'
                    f'jetstream {{ store_dir: "{store}" }}\n'
                )
            else:
                conf.write_text(
                    cluster_node_config(
                        name, f"{address}:{port}", routes[len(self.nodes)], routes, store
                    )
                )
            node = EmbeddedNats(
                store_dir=store,
                port=port,
                host=address,
                config_file=conf,
                name=name,
                launcher=self.host(name).launcher,
            )
            self.nodes[name] = node
        await asyncio.gather(*(node.astart() for node in self.nodes.values()))
        self.nats = NatsConfig(
            url=",".join(node.url for node in self.nodes.values()),
            replicas=len(hosts),
            ping_interval=PING_INTERVAL,
            events_duplicate_window=DUPLICATE_WINDOW,
        )
        self.client = await provisioned(self.nats, "multihost", 60.0)
        return self.nats

    # --- services ---------------------------------------------------------------------

    def start_agent(self, host: str, ports: Sequence[str], **settings: object) -> Service:
        """`smsgate agent` on `host` with these simulated modems (named after the host)."""
        devices = {port: self.sim.devices[port] for port in ports}
        state = self.workdir / f"state-{host}"
        state.mkdir(exist_ok=True)
        timings: dict[str, object] = {
            "heartbeat": HEARTBEAT,
            "ack_wait": ACK_WAIT,
            "lease": LEASE,
            "holder_timeout": HOLDER_TIMEOUT,
            "retries": 0,
            "state_dir": str(state),
        }
        config = agent_config(self.nats, host, devices)
        config.agent = msgspec.structs.replace(config.agent, **{**timings, **settings})
        return self.procs.start("agent", host, config, launcher=self.host(host).launcher)

    async def start_api(self, host: str, *, front: bool = False, **settings: object) -> Service:
        """`smsgate api` on `host`; `front`: clients reach it by a cable of its own."""
        address = self.lan.add_front(self.host(host).name) if front else self.host(host).address
        api = ApiConfig(
            listen=f"{address}:{_service_port()}",
            users=[ApiUser(name=USER, password=PASSWORD)],
            publish_timeout=2.0,
        )
        config = Config(nats=self.nats, api=msgspec.structs.replace(api, **settings))
        service = self.procs.start("api", f"api-{host}", config, launcher=self.host(host).launcher)
        await wait_ready(service, 60)
        return service

    async def start_callback(self, host: str) -> Service:
        """`smsgate callback` on `host`, calling the receiver on the operator's machine."""
        if self.receiver is None:
            self.receiver = Receiver(host=self.lan.gateway)
            await self.receiver.start()
        config = callback_config(self.nats, url=self.receiver.url)
        return self.procs.start(
            "callback", f"callback-{host}", config, launcher=self.host(host).launcher
        )

    def agent(self, host: str) -> Service:
        return next(s for s in self.procs.services if s.kind == "agent" and s.name == host)

    async def restart(self, service: Service) -> None:
        """SIGTERM (a graceful stop, as an upgrade does it), then the same command again."""
        await service.terminate()
        service.start()

    async def restart_node(self, name: str) -> None:
        node = self.nodes[name]
        await node.astop()
        await node.astart()

    async def books(self, load: Load, scenario: str, limit: float = 120.0) -> Tally:
        """Wait (bounded) for a result of every accepted message and, with a callback
        service, for a 2xx callback of every result; then the books, printed."""
        assert self.client is not None
        js = self.client.jetstream()
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, limit)
        called_back: dict[str, set[str]] | None = None
        if self.receiver is not None:
            await self.until_called_back("result", limit)
            called_back = result_callbacks(self.receiver)
        stored = await stored_statuses(await js.key_value(subjects.MESSAGES_BUCKET), accepted)
        books = tally(
            load.messages, results, self.sim.sent(), stored=stored, called_back=called_back
        )
        print(books.summary(scenario))
        return books

    async def until_called_back(self, kind: str, limit: float = 120.0) -> None:
        """Wait (bounded) until every `kind` event in the stream got a 2xx callback. An event
        the callback host held when its cable was cut comes back only after ack_wait."""
        assert self.client is not None
        assert self.receiver is not None
        receiver = self.receiver
        ids = {e.event_id for _, e in await stream_events(self.client.jetstream(), kind)}
        await until(lambda: ids <= set(receiver.ok_ids()), f"every {kind} called back", limit)

    async def inject_inbound(self, ports: Sequence[str], each: int, tag: str) -> list[str]:
        """`each` SMS from outside to every one of `ports`; their texts."""
        texts: list[str] = []
        for port in ports:
            for i in range(each):
                texts.append(f"{tag} to {port} #{i}")
                await self.sim.inject(texts[-1], sender=OUTSIDE, to_port=port)
        return texts

    async def inbound_books(self, texts: Sequence[str], limit: float = 60.0) -> Deliveries:
        """Wait (bounded) until every text is in the stream as an inbound SMS; the books."""
        return await self._delivered("inbound", texts, lambda e: getattr(e, "text", ""), limit)

    async def report_books(self, load: Load, limit: float = 60.0) -> Deliveries:
        """Wait (bounded) for one delivery report per message sent; the books."""
        assert self.client is not None
        results = await stream_results(self.client.jetstream())
        sent = [i for i, r in results.items() if r[0].status is contracts.SendStatus.SENT]
        return await self._delivered("report", sent, lambda e: getattr(e, "id", ""), limit)

    async def _delivered(
        self,
        kind: str,
        expected: Sequence[str],
        key: Callable[[contracts.Event], str],
        limit: float,
    ) -> Deliveries:
        assert self.client is not None
        js = self.client.jetstream()
        got: list[str] = []

        async def arrived() -> bool:
            nonlocal got
            got = [key(event) for _, event in await stream_events(js, kind)]
            return set(expected) <= set(got)

        with contextlib.suppress(AssertionError):
            await until_async(arrived, f"every {kind} event", limit)
        return deliveries(kind, expected, got)

    async def stop(self) -> None:
        await self.procs.stop_all()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.receiver is not None:
            await self.receiver.stop()
        await asyncio.gather(*(node.astop() for node in self.nodes.values()))
        await self.sim.stop()


def result_callbacks(receiver: Receiver) -> dict[str, set[str]]:
    """The statuses (`Sent`, `Failed`) each message id's result callbacks carried."""
    said: dict[str, set[str]] = {}
    for hit in receiver.hits:
        params = dict(hit.params)
        if params.get("type") == RESULT_TYPE and "id" in params:
            said.setdefault(params["id"], set()).add(params.get("status", ""))
    return said


def in_flight(sim: Simulator, ports: Iterable[str]) -> set[str]:
    """The ports whose modem holds a PDU whose `+CMGS` it has not given yet."""
    return {p for p in ports if sim.modem(p).stats.pdus_received > sim.modem(p).stats.parts_sent}


@contextlib.asynccontextmanager
async def farm(lan: Lan, workdir: Path, ports: int = 8, **sim: object) -> AsyncIterator[Farm]:
    """A farm whose processes and modems are all gone after the `async with`."""
    settings: dict[str, object] = {"part_time": (0.1, 0.3), "sent_log": 10_000, **sim}
    modems = await start_sim(ports=ports, **settings)
    the_farm = Farm(lan=lan, workdir=workdir, procs=Processes(workdir), sim=modems)
    try:
        yield the_farm
    finally:
        await the_farm.stop()
