"""Prometheus metrics in the text exposition format, kept in plain dicts.

Requests by route and outcome, latency histograms by route, messages by outcome; the
queue depth and ports by status are read when scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

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


def _labels(labels: Mapping[str, str]) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}" if inner else ""


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(BUCKETS, value)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.total += value
        self.count += 1


class Metrics:
    """The API process's own counters and histograms."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.messages: dict[str, int] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, outcome(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = _Histogram()
        histogram.observe(seconds)

    def message(self, result: str, count: int = 1) -> None:
        self.messages[result] = self.messages.get(result, 0) + count

    def render(
        self, *, queue_depth: int | None, ports: Mapping[str, int], nats_connected: bool
    ) -> str:
        lines = [
            "# HELP smsgate_api_requests_total HTTP requests by route and outcome.",
            "# TYPE smsgate_api_requests_total counter",
        ]
        for (route, result), count in sorted(self.requests.items()):
            lines.append(
                f"smsgate_api_requests_total{_labels({'route': route, 'outcome': result})} {count}"
            )
        lines += [
            "# HELP smsgate_api_request_duration_seconds Time to answer, by route.",
            "# TYPE smsgate_api_request_duration_seconds histogram",
        ]
        for route, histogram in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip(BUCKETS, histogram.counts, strict=True):
                cumulative += count
                labels = _labels({"route": route, "le": repr(bound)})
                lines.append(f"smsgate_api_request_duration_seconds_bucket{labels} {cumulative}")
            labels = _labels({"route": route, "le": "+Inf"})
            lines.append(f"smsgate_api_request_duration_seconds_bucket{labels} {histogram.count}")
            route_label = _labels({"route": route})
            lines.append(f"smsgate_api_request_duration_seconds_sum{route_label} {histogram.total}")
            lines.append(
                f"smsgate_api_request_duration_seconds_count{route_label} {histogram.count}"
            )
        lines += [
            "# HELP smsgate_api_messages_total Messages by outcome (queued, repeat, refused).",
            "# TYPE smsgate_api_messages_total counter",
        ]
        for result, count in sorted(self.messages.items()):
            lines.append(f"smsgate_api_messages_total{_labels({'outcome': result})} {count}")
        lines += [
            "# HELP smsgate_send_queue_depth Jobs waiting in the SMS_SEND stream.",
            "# TYPE smsgate_send_queue_depth gauge",
        ]
        if queue_depth is not None:
            lines.append(f"smsgate_send_queue_depth {queue_depth}")
        lines += [
            "# HELP smsgate_ports Ports by status, as this API instance sees them.",
            "# TYPE smsgate_ports gauge",
        ]
        for status, count in sorted(ports.items()):
            lines.append(f"smsgate_ports{_labels({'status': status})} {count}")
        lines += [
            "# HELP smsgate_api_nats_connected 1 when connected to NATS.",
            "# TYPE smsgate_api_nats_connected gauge",
            f"smsgate_api_nats_connected {int(nats_connected)}",
        ]
        return "\n".join(lines) + "\n"
