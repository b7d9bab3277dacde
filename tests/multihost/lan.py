"""Hosts as network namespaces on one bridge, and cables that can be cut.

Each host is a network namespace with one veth pair: the inner end is the host's only
interface (with its address in a private 10.x.y.0/24 picked per LAN), the outer end is
plugged into the LAN's bridge. The test process sits on the bridge itself (`.1`): it is
the operator's machine, where the load comes from and the callback receiver listens.

`cut(host)` sets the outer end down: the host's packets are dropped without a word, as
with a pulled cable (TCP hangs and retransmits; nothing resets). `heal(host)` sets it up.

Every name the harness makes starts with `smh` and the run's tag, so whatever a run
leaves behind (a crash, Ctrl-C) is found by name and removed (`remove_leftovers`).
Processes started in a host's namespace are killed before the namespace is deleted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

PREFIX = "smh"
RUN = f"{random.randrange(16**3):03x}"  # this test session's tag: a run removes only its own


class LanError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LanError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why hosts cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = f"{PREFIX}{RUN}probe"
    try:
        _ip("netns", "add", probe)
    except LanError as exc:
        return f"cannot create a network namespace: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet(avoid: Sequence[ipaddress.IPv4Network] = ()) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address or route of this machine overlaps."""
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network(word, strict=False)
        for line in (_ip("-4", "-o", "addr") + _ip("-4", "route")).splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    taken.extend(avoid)
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randrange(64, 250)}.{random.randrange(256)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise LanError("no free 10.x.y.0/24 for the test LAN")


@dataclass
class Host:
    """One machine of the farm: a network namespace with one cable to the LAN."""

    name: str
    netns: str
    address: str
    cable: str  # the veth end on the bridge: down = cut
    inner: str

    @property
    def launcher(self) -> list[str]:
        """Prefix a command line with this to run it on this host."""
        return ["ip", "netns", "exec", self.netns]


@dataclass
class Lan:
    """A bridge, the hosts on it, and the cables between them."""

    index: int
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    hosts: dict[str, Host] = field(default_factory=dict)
    cut_hosts: set[str] = field(default_factory=set)
    front: ipaddress.IPv4Network | None = None  # the /24 the front links take /30s from
    fronts: dict[str, str] = field(default_factory=dict)  # host -> its front address

    @property
    def tag(self) -> str:
        return f"{PREFIX}{RUN}{self.index:02d}"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def gateway(self) -> str:
        """The test process's own address on the LAN."""
        return str(self.subnet.network_address + 1)

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        number = len(self.hosts) + 2
        letter = chr(ord("a") + len(self.hosts))
        host = Host(
            name=name,
            netns=f"{self.tag}-{name}",
            address=str(self.subnet.network_address + number),
            cable=f"{self.tag}{letter}o",
            inner=f"{self.tag}{letter}i",
        )
        _ip("netns", "add", host.netns)
        self.hosts[name] = host
        _ip("link", "add", host.cable, "type", "veth", "peer", "name", host.inner)
        _ip("link", "set", host.inner, "netns", host.netns)
        _ip("link", "set", host.cable, "master", self.bridge)
        _ip("link", "set", host.cable, "up")
        inside = ("-n", host.netns)
        _ip(*inside, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", host.inner)
        _ip(*inside, "link", "set", host.inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        return host

    def add_front(self, name: str) -> str:
        """A second cable from the host straight to the test process (a front network,
        as an API behind a load balancer has): the LAN cable can be cut while clients
        still reach the host. The host's address on it."""
        host = self.hosts[name]
        if self.front is None:
            self.front = _free_subnet(avoid=[self.subnet])
        base = self.front.network_address + 4 * (len(self.fronts) + 1)
        outside, inside = f"{host.cable[:-1]}f", f"{host.cable[:-1]}g"
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", host.netns)
        _ip("addr", "add", f"{base + 1}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", host.netns, "addr", "add", f"{base + 2}/30", "dev", inside)
        _ip("-n", host.netns, "link", "set", inside, "up")
        self.fronts[name] = str(base + 2)
        return self.fronts[name]

    def cut(self, name: str) -> None:
        """Pull the host's cable: its packets vanish, nothing tells either side."""
        _ip("link", "set", self.hosts[name].cable, "down")
        self.cut_hosts.add(name)

    def heal(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].cable, "up")
        self.cut_hosts.discard(name)

    def remove(self) -> None:
        """Kill what runs on the hosts, delete their namespaces, cables and the bridge."""
        for host in self.hosts.values():
            _ip("link", "del", host.cable, check=False)  # both ends go
            if host.name in self.fronts:
                _ip("link", "del", f"{host.cable[:-1]}f", check=False)
            _remove_namespace(host.netns)
        _ip("link", "del", self.bridge, check=False)
        self.hosts.clear()


def _remove_namespace(netns: str) -> None:
    pids = _ip("netns", "pids", netns, check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", netns, check=False)  # its veth ends go with it


def remove_leftovers(tag: str = f"{PREFIX}{RUN}") -> list[str]:
    """Remove every namespace and link whose name starts with `tag`; what was removed."""
    removed: list[str] = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(tag):
            _remove_namespace(name)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if name.startswith(tag):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed
