"""The compatibility farm, shared by the whole matrix; results written for the README table."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smsgate.config import NatsConfig

from tests.compat.farm import CompatFarm, compat_farm

# Set to a file name and the run writes {profile: {check: "passed"|"failed"}} there
# (tests/compat/matrix.py turns it into the README's table).
RESULTS_ENV = "SMSGATE_COMPAT_RESULTS"
_results: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
async def farm(nats_server: object) -> AsyncIterator[CompatFarm]:
    url = getattr(nats_server, "url")  # noqa: B009 - EmbeddedNats without importing it twice
    async with compat_farm(NatsConfig(url=url)) as started:
        yield started


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and not (report.when == "setup" and report.failed):
        return
    if "tests/compat/" not in report.nodeid or "[" not in report.nodeid:
        return
    # test_compat[<check>-<profile>]: check names have no "-", profile names may.
    check, _, profile = report.nodeid.rpartition("[")[2].rstrip("]").partition("-")
    _results.setdefault(profile, {})[check] = report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(RESULTS_ENV)
    if target and _results:
        Path(target).write_text(json.dumps(_results, indent=1, sort_keys=True) + "\n")
