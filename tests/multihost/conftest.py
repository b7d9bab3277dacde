"""Hosts as network namespaces: root only (CI runs as root); removed pass or fail.

Each test gets a LAN of its own. A session finalizer (and an atexit hook, for an
interrupted run) removes whatever namespace or link of this run is still there.
"""

from __future__ import annotations

import atexit
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.multihost.farm import Farm, farm
from tests.multihost.lan import Lan, remove_leftovers, unavailable

_numbers = itertools.count(1)
_why_not: list[str | None] = []


def _unavailable() -> str | None:
    if not _why_not:
        _why_not.append(unavailable())
    return _why_not[0]


@pytest.fixture(scope="session", autouse=True)
def _remove_leftovers() -> Iterator[None]:
    atexit.register(remove_leftovers)
    yield
    remove_leftovers()


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(f"multi-host scenarios skipped: {reason}")
    network = Lan(next(_numbers))
    try:
        network.up()
        yield network
    finally:
        network.remove()


@pytest.fixture
async def hosts(lan: Lan, tmp_path: Path) -> AsyncIterator[Farm]:
    async with farm(lan, tmp_path) as the_farm:
        yield the_farm
