"""Where a message goes: the live port table (a KV watch) and the choice of port.

No `port` and a user who may use every port: the job goes to `sms.send.any`, and the
first idle modem in the farm takes it. A subset of ports (from `port=` or the user's
allowed list): the ready port with the least work is chosen and the job pinned to it.
The table is kept current by watches on the `sms_ports` bucket and on the agents' leases
(`sms_agents`), never read per request; a port is down once neither its state nor its
agent's lease was written for three heartbeats (smsgate.port_liveness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from smsgate import contracts, port_liveness, subjects
from smsgate.contracts import Lease, PortState, PortStatus

from smsgate_api.auth import User
from smsgate_api.errors import ApiError, bad_parameter, unavailable

log = logging.getLogger("smsgate.api.routing")

# Lower is better when choosing among candidate ports.
_RANK = {
    PortStatus.READY: 0,
    PortStatus.BUSY: 1,
    PortStatus.PARKED: 2,
    PortStatus.DOWN: 3,
    PortStatus.DISABLED: 4,
    PortStatus.UNKNOWN: 5,
}
_LIST_MAX = 40  # names shown in an error message


@dataclass(frozen=True, slots=True)
class Route:
    """Where one job goes: its subject and the pinned port, None for any port."""

    subject: str
    port: str | None


ANY = Route(subjects.SEND_ANY, None)


def _natural(name: str) -> tuple[str, int]:
    match = re.match(r"^(.*?)(\d*)$", name)
    assert match is not None
    return match.group(1), int(match.group(2) or -1)


def listing(names: Iterable[str]) -> str:
    """Names for an error message: sorted naturally, shortened when there are many."""
    ordered = sorted(names, key=_natural)
    if not ordered:
        return "none"
    shown = ", ".join(ordered[:_LIST_MAX])
    return shown + (f", ... ({len(ordered)} in all)" if len(ordered) > _LIST_MAX else "")


async def _watch(
    kv: KeyValue, what: str, apply: Callable[[str, bytes | None], None], synced: asyncio.Event
) -> None:
    """Every entry of `kv` to `apply` (None: deleted), for ever; `synced` is set once the
    initial values are in. The watch restarts on errors."""
    while True:
        watcher = None
        try:
            watcher = await kv.watchall()
            async for entry in watcher:
                if entry is None:  # the initial values are all in
                    synced.set()
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE)
                apply(entry.key, None if deleted else entry.value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s watch failed, restarting: %s", what, exc)
            await asyncio.sleep(1.0)
        finally:
            if watcher is not None:
                with contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]


class PortTable:
    """The farm's ports as last seen in the `sms_ports` bucket, and their agents' leases."""

    def __init__(self) -> None:
        self._states: dict[str, PortState] = {}
        self._leases: dict[str, Lease] = {}  # by agent name
        # Jobs this process pinned since the port last reported, so a burst spreads out
        # instead of piling onto the port that looked least busy at the last heartbeat.
        self._pending: dict[str, int] = {}
        self._ports_in, self._leases_in = asyncio.Event(), asyncio.Event()
        self.synced = asyncio.Event()  # both buckets' initial values are in

    # --- updates -------------------------------------------------------------------------

    def apply(self, name: str, value: bytes | None) -> None:
        """Take one KV entry; None (deleted or purged) removes the port."""
        if value is None:
            self._states.pop(name, None)
            self._pending.pop(name, None)
            return
        try:
            state = contracts.decode(value, PortState)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable port state %r: %s", name, exc)
            return
        self._states[name] = state
        self._pending[name] = 0

    def apply_lease(self, value: bytes | None) -> None:
        """Take one entry of `sms_agents`, an agent's lease (None: deleted, nothing to do:
        the ports of an agent whose lease is gone go down with their own states)."""
        if value is None:
            return
        try:
            lease = msgspec.json.decode(value, type=Lease)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable agent lease: %s", exc)
            return
        self._leases[lease.agent] = lease

    async def follow(self, ports: KeyValue, agents: KeyValue | None) -> None:
        """Keep the table current from watches on `sms_ports` and `sms_agents` (None: a
        farm without leases yet, whose agents rewrite their ports' states every beat)."""
        watches = [_watch(ports, "port", self.apply, self._ports_in), self._sync()]
        if agents is None:
            self._leases_in.set()
        else:
            apply = lambda _, value: self.apply_lease(value)  # noqa: E731
            watches.append(_watch(agents, "lease", apply, self._leases_in))
        await asyncio.gather(*watches)

    async def _sync(self) -> None:
        await self._ports_in.wait()
        await self._leases_in.wait()
        self.synced.set()

    # --- reading -------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._states)

    def _lease_of(self, state: PortState) -> Lease | None:
        return self._leases.get(state.agent)

    def status(self, name: str, now: float | None = None) -> PortStatus:
        """The port's status, `down` when unknown or when it was not heard from."""
        state = self._states.get(name)
        if state is None:
            return PortStatus.DOWN
        when = time.time() if now is None else now
        if not port_liveness.is_live(state, self._lease_of(state), when):
            return PortStatus.DOWN
        return state.status

    def state(self, name: str, now: float | None = None) -> PortState | None:
        """The stored state as readers show it: its status corrected for a silent agent,
        `updated` when it was last known current (see smsgate.port_liveness)."""
        state = self._states.get(name)
        if state is None:
            return None
        when = time.time() if now is None else now
        return port_liveness.as_seen(state, self._lease_of(state), when)

    def number(self, name: str | None) -> int | None:
        """The gateway port number: from the port's state, else the name's trailing digits."""
        if name is None:
            return None
        state = self._states.get(name)
        if state is not None and state.port_number is not None:
            return state.port_number
        return subjects.port_number(name)

    def counts(self, now: float | None = None) -> dict[PortStatus, int]:
        counts = dict.fromkeys(PortStatus, 0)
        for name in self._states:
            counts[self.status(name, now)] += 1
        return counts

    # --- choosing ------------------------------------------------------------------------

    def known(self, user: User) -> list[str]:
        """Every port name this user may use: seen in the bucket or named in their list."""
        names = [n for n in self._states if user.may_use(n)]
        if not user.all_ports:
            names.extend(n for n in user.literal_ports if n not in self._states)
        return names

    def resolve(self, tokens: Sequence[str], user: User) -> list[str]:
        """Port names for `port=` tokens (names or gateway numbers), checked against the user."""
        allowed = self.known(user)
        allowed_set = set(allowed)
        every = set(self._states) | allowed_set
        chosen: list[str] = []
        for token in tokens:
            name = self._resolve_one(token, allowed, every, user)
            if name not in allowed_set:
                raise ApiError(
                    403,
                    "port_not_allowed",
                    f"port {name} is not allowed for user {user.name}; allowed: {listing(allowed)}",
                )
            if name not in chosen:
                chosen.append(name)
        return chosen

    def _resolve_one(self, token: str, allowed: list[str], every: set[str], user: User) -> str:
        if token in every:
            return token
        if token.isascii() and token.isdigit():
            number = int(token)
            for pool in (allowed, every):
                matches = [n for n in pool if self.number(n) == number]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise bad_parameter(
                        f"port {token} is ambiguous: it could be {listing(matches)}; "
                        "give the full port name"
                    )
        raise bad_parameter(f"unknown port {token!r}; valid ports: {listing(allowed)}")

    def route(self, user: User, tokens: Sequence[str] | None) -> list[str] | None:
        """Candidate ports for a request, or None when any port in the farm will do."""
        if tokens is None:
            if user.all_ports:
                return None
            candidates = self.known(user)
            if not candidates:
                raise unavailable(f"no port that user {user.name} may use is known yet")
            return candidates
        return self.resolve(tokens, user)

    def choose(self, candidates: Sequence[str], now: float | None = None) -> Route:
        """Pin to the best candidate: ready before busy before the rest, then least work."""
        if len(candidates) == 1:
            best = candidates[0]
        else:
            when = time.time() if now is None else now
            best = min(candidates, key=lambda n: self._load(n, when))
        self._pending[best] = self._pending.get(best, 0) + 1
        return Route(subjects.send_port(best), best)

    def _load(self, name: str, now: float) -> tuple[int, int]:
        state = self._states.get(name)
        queue = state.queue if state is not None else 0
        return _RANK[self.status(name, now)], queue + self._pending.get(name, 0)
