"""Callback counters and their Prometheus text rendering (served by whoever hosts /metrics)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

Labels = tuple[str, ...]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    """A monotonically increasing count per label set."""

    name: str
    help: str
    labelnames: Labels
    values: dict[Labels, float] = field(default_factory=dict)
    kind: str = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labelnames, labels)} {_number(value)}"


@dataclass
class Gauge(Counter):
    """A value that goes up and down (deliveries in flight)."""

    kind: str = "gauge"

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)


@dataclass
class Histogram:
    """Observations counted into cumulative buckets, with their sum and count."""

    name: str
    help: str
    labelnames: Labels
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        return sum(self.counts.get(labels, ()))

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(self.sums[labels])}"
            yield f"{self.name}_count{_labels(self.labelnames, labels)} {running}"


@dataclass
class CallbackMetrics:
    """Every counter of the callback service, labelled by webhook name."""

    deliveries: Counter = field(
        default_factory=lambda: Counter(
            "smsgate_callback_deliveries_total",
            "Events finished, by outcome (delivered, dead).",
            ("webhook", "outcome"),
        )
    )
    attempts: Counter = field(
        default_factory=lambda: Counter(
            "smsgate_callback_attempts_total",
            "HTTP attempts, by result (2xx, 4xx, 5xx, 408, 429, timeout, connect, error).",
            ("webhook", "result"),
        )
    )
    latency: Histogram = field(
        default_factory=lambda: Histogram(
            "smsgate_callback_latency_seconds",
            "Duration of one HTTP attempt.",
            ("webhook",),
        )
    )
    dead_letters: Counter = field(
        default_factory=lambda: Counter(
            "smsgate_callback_dead_letters_total",
            "Events sent to the dead-letter subject, by reason (expired, permanent, undecodable).",
            ("webhook", "reason"),
        )
    )
    in_flight: Gauge = field(
        default_factory=lambda: Gauge(
            "smsgate_callback_in_flight",
            "Events fetched and not yet acknowledged.",
            ("webhook",),
        )
    )

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        families = (self.deliveries, self.attempts, self.latency, self.dead_letters, self.in_flight)
        return "".join(line + "\n" for family in families for line in family.lines())


metrics = CallbackMetrics()


def render_metrics(registry: CallbackMetrics | None = None) -> str:
    """The process-wide callback metrics (or `registry`) as Prometheus text."""
    return (registry or metrics).render()
