"""The port table and the choice of port, without NATS."""

from __future__ import annotations

import datetime as dt
import time

import msgspec
import pytest
from smsgate import contracts, subjects
from smsgate.contracts import Lease, PortState, PortStatus
from smsgate_api.auth import User
from smsgate_api.errors import ApiError
from smsgate_api.port_choice import PortTable, listing

EVERYONE = User(name="all")
LIMITED = User(name="lim", ports=("lte-1", "lte-2"))


def state(
    name: str, status: PortStatus = PortStatus.READY, queue: int = 0, age: float = 0
) -> bytes:
    updated = contracts.utcnow() - dt.timedelta(seconds=age)
    return contracts.encode(
        PortState(
            port=name,
            port_number=subjects.port_number(name),
            agent="a",
            device="d",
            status=status,
            queue=queue,
            updated=updated,
            heartbeat_interval=5.0,
        )
    )


def table(*entries: tuple[str, bytes]) -> PortTable:
    ports = PortTable()
    for name, value in entries:
        ports.apply(name, value)
    return ports


def test_any_port_when_unrestricted() -> None:
    assert table().route(EVERYONE, None) is None


def test_ready_least_work_first() -> None:
    ports = table(
        ("lte-1", state("lte-1", PortStatus.BUSY)),
        ("lte-2", state("lte-2", queue=4)),
        ("lte-3", state("lte-3", queue=1)),
        ("lte-4", state("lte-4", age=60)),  # heartbeats stopped: down
    )
    assert ports.status("lte-4") is PortStatus.DOWN
    candidates = ports.route(EVERYONE, ["1", "2", "3", "4"])
    assert candidates == ["lte-1", "lte-2", "lte-3", "lte-4"]
    chosen = [ports.choose(candidates).port for _ in range(5)]
    assert chosen == ["lte-3", "lte-3", "lte-3", "lte-2", "lte-3"]
    route = ports.choose(["lte-1"])
    assert route.subject == subjects.send_port("lte-1")


def test_a_new_report_clears_local_pending() -> None:
    ports = table(("lte-1", state("lte-1")), ("lte-2", state("lte-2")))
    assert ports.choose(["lte-1", "lte-2"]).port == "lte-1"
    ports.apply("lte-2", state("lte-2", queue=3))
    assert ports.choose(["lte-1", "lte-2"]).port == "lte-1"


def test_resolution_errors() -> None:
    ports = table(("lte-1", state("lte-1")), ("hosta-lte-3", state("hosta-lte-3")),
                  ("hostb-lte-3", state("hostb-lte-3")))  # fmt: skip
    with pytest.raises(ApiError, match="ambiguous"):
        ports.resolve(["3"], EVERYONE)
    with pytest.raises(ApiError, match="unknown port 'x'; valid ports: lte-1"):
        ports.resolve(["x"], LIMITED)
    with pytest.raises(ApiError) as forbidden:
        ports.resolve(["hosta-lte-3"], LIMITED)
    assert forbidden.value.status == 403
    # The user's own list names lte-2 even though it never reported.
    assert ports.route(LIMITED, None) == ["lte-1", "lte-2"]
    assert ports.resolve(["2", "lte-1", "1"], LIMITED) == ["lte-2", "lte-1"]


@pytest.mark.parametrize("token", ["²", "١", "3²"])
def test_a_non_ascii_digit_is_an_unknown_port_not_a_crash(token: str) -> None:
    # str.isdigit() is true for '²' and Arabic-Indic digits, and int() refuses some of them.
    ports = table(("lte-1", state("lte-1")))
    with pytest.raises(ApiError, match="unknown port"):
        ports.resolve([token], EVERYONE)


def test_deletes_and_bad_values() -> None:
    ports = table(("lte-1", state("lte-1")), ("lte-2", b"not json"))
    assert ports.names == ["lte-1"]
    ports.apply("lte-1", None)
    assert ports.names == []
    assert ports.number("lte-7") == 7


def test_listing_is_natural_and_short() -> None:
    assert listing(["lte-10", "lte-2", "lte-1"]) == "lte-1, lte-2, lte-10"
    assert listing([]) == "none"
    assert listing(f"p-{i}" for i in range(50)).endswith("... (50 in all)")


def new_style(name: str, age: float, boot: str = "run-1") -> bytes:
    """A state as agents write it now: once, when it changed, naming their run."""
    value = msgspec.json.decode(state(name, age=age), type=PortState)
    return contracts.encode(msgspec.structs.replace(value, boot=boot))


def lease(renewed_ago: float, boot: str = "run-1") -> bytes:
    renewed = time.time() - renewed_ago
    return msgspec.json.encode(Lease(agent="a", boot=boot, renewed=renewed, lease=15.0))


def test_an_unchanged_port_is_up_while_its_agent_renews_its_lease() -> None:
    ports = table(("lte-1", new_style("lte-1", age=600)))
    assert ports.status("lte-1") is PortStatus.DOWN  # no lease seen yet
    ports.apply_lease(lease(1))
    assert ports.status("lte-1") is PortStatus.READY
    assert ports.counts()[PortStatus.READY] == 1
    shown = ports.state("lte-1")
    assert shown is not None
    assert time.time() - shown.updated.timestamp() < 5  # last known current: the renewal
    ports.apply_lease(lease(16))  # the agent stopped renewing: its ports go down
    assert ports.status("lte-1") is PortStatus.DOWN
    assert ports.counts()[PortStatus.DOWN] == 1


def test_a_lease_of_another_run_keeps_no_port_up() -> None:
    # The agent started again without lte-1 in its config: its old state stays behind.
    ports = table(("lte-1", new_style("lte-1", age=600, boot="run-1")))
    ports.apply_lease(lease(1, boot="run-2"))
    assert ports.status("lte-1") is PortStatus.DOWN


def test_an_older_agent_rewriting_every_beat_is_read_as_before() -> None:
    # A rolling upgrade: this agent still writes every state each beat, naming no run.
    ports = table(("lte-1", state("lte-1", age=2)), ("lte-2", state("lte-2", age=16)))
    ports.apply_lease(lease(1))  # it renews a lease too (for its send claims)
    assert ports.status("lte-1") is PortStatus.READY
    assert ports.status("lte-2") is PortStatus.DOWN


def test_unreadable_or_deleted_leases_are_ignored() -> None:
    ports = table(("lte-1", new_style("lte-1", age=1)))
    ports.apply_lease(b"not json")
    ports.apply_lease(None)
    assert ports.status("lte-1") is PortStatus.READY  # its own write is fresh
