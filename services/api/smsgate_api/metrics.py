"""The API process's Prometheus metrics, on the core writer (smsgate.metrics).

Requests by route and outcome, latency histograms by route, messages by outcome; the
queue depth and ports by status are read when scraped.
"""

from __future__ import annotations

from collections.abc import Mapping

from smsgate.metrics import Counter, Gauge, Histogram, render

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def outcome(status: int) -> str:
    """A request's outcome label from its HTTP status."""
    if status < 400:
        return "ok"
    if status == 429:
        return "throttled"
    if status < 500:
        return "rejected"
    return "error"


class Metrics:
    """The API process's own counters and histograms."""

    def __init__(self) -> None:
        self.requests = Counter(
            "smsgate_api_requests_total",
            "HTTP requests by route and outcome.",
            ("route", "outcome"),
        )
        self.latency = Histogram(
            "smsgate_api_request_duration_seconds", "Time to answer, by route.", ("route",), BUCKETS
        )
        self.messages = Counter(
            "smsgate_api_messages_total",
            "Messages by outcome (queued, repeat, refused).",
            ("outcome",),
        )

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(route, outcome(status))
        self.latency.observe(seconds, route)

    def message(self, result: str, count: int = 1) -> None:
        self.messages.inc(result, amount=count)

    def render(
        self, *, queue_depth: int | None, ports: Mapping[str, int], nats_connected: bool
    ) -> str:
        depth = Gauge("smsgate_send_queue_depth", "Jobs waiting in the SMS_SEND stream.")
        if queue_depth is not None:
            depth.set(queue_depth)
        by_status = Gauge(
            "smsgate_ports", "Ports by status, as this API instance sees them.", ("status",)
        )
        for status, count in ports.items():
            by_status.set(count, status)
        connected = Gauge("smsgate_api_nats_connected", "1 when connected to NATS.")
        connected.set(int(nats_connected))
        return render((self.requests, self.latency, self.messages, depth, by_status, connected))
