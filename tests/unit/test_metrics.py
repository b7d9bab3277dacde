"""The one Prometheus writer (smsgate.metrics) and its HTTP endpoint, on loopback."""

from __future__ import annotations

import socket

import httpx
import pytest
from smsgate.config import ConfigError
from smsgate.metrics import Counter, Gauge, Histogram, MetricsEndpoint, render, serving


def test_families_render_in_the_text_format() -> None:
    count = Counter("x_total", "Things.", ("port",))
    count.inc("lte-1", amount=2)
    level = Gauge("x_level", "A level.")
    level.set(-71)
    latency = Histogram("x_seconds", "Time.", (), (0.1, 1.0))
    latency.observe(0.5)
    lines = render((count, level, latency)).splitlines()
    assert 'x_total{port="lte-1"} 2' in lines
    assert "x_level -71" in lines
    assert 'x_seconds_bucket{le="0.1"} 0' in lines
    assert 'x_seconds_bucket{le="1"} 1' in lines
    assert 'x_seconds_bucket{le="+Inf"} 1' in lines
    assert "x_seconds_count 1" in lines


async def test_endpoint_serves_metrics_and_health() -> None:
    count = Counter("y_total", "Things.")
    count.inc()
    endpoint = MetricsEndpoint("127.0.0.1:0", "agent.metrics_listen", [lambda: render([count])])
    async with endpoint, httpx.AsyncClient() as http:
        metrics = await http.get(endpoint.url)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "y_total 1" in metrics.text.splitlines()
        base = endpoint.url.removesuffix("/metrics")
        assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"{base}/other")).status_code == 404


async def test_a_bad_or_taken_address_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^callback\.metrics_listen: must be host:port"):
        async with serving("9102", "callback.metrics_listen", []):
            pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"agent\.metrics_listen: cannot listen on .*:{port}"
        ):
            async with serving(f"127.0.0.1:{port}", "agent.metrics_listen", []):
                pass
    async with serving("", "agent.metrics_listen", []):  # off: nothing is bound
        pass
