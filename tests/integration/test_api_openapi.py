"""The OpenAPI document, fuzzed by schemathesis against a real server: no 5xx, no drift.

Bounded: a few examples per operation and mode. The checks: no 5xx, and every status,
content type and body is the one documented. (Schema-valid data may still be refused:
credentials, port names and SMS part counts are checked beyond what a schema can say.)
The SSE streams never end, so they are left out here (tested in test_api_server.py and
test_api_console.py).
schemathesis's own pytest plugin does not work with pytest 9 yet (`Function._nodeid`),
so the operations are driven with Hypothesis directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from smsgate import contracts

from tests.conftest import Bus
from tests.integration.api_fixtures import TOKEN, ServerThread, api_config, port_state, serving

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
async def with_port(nats_bus: Bus) -> None:
    await nats_bus.buckets.ports.put("lte-1", contracts.encode(port_state("lte-1")))


@pytest.fixture
def openapi_server(nats_bus: Bus, with_port: None) -> Iterator[ServerThread]:
    # Generated `timeout`/`wait` values would otherwise make requests wait for results.
    with serving(api_config(nats_bus.config, max_timeout=0.05)) as server:
        yield server


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_conformance(openapi_server: ServerThread, mode: GenerationMode) -> None:
    loaded = schemathesis.openapi.from_url(f"{openapi_server.url}/openapi.json")
    schema = loaded.exclude(path=["/api/v1/events", "/api/v1/console/stream"])
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 19  # every operation but the two SSE streams
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # No invalid request exists for an operation without inputs (/healthz...).
            assert mode is GenerationMode.NEGATIVE
