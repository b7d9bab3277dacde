"""The callback service's counters (served on `callback.metrics_listen`, and by dev mode's API)."""

from __future__ import annotations

from dataclasses import dataclass, field

from smsgate.metrics import Counter, Gauge, Histogram, render


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
        return render(
            (self.deliveries, self.attempts, self.latency, self.dead_letters, self.in_flight)
        )


metrics = CallbackMetrics()


def render_metrics(registry: CallbackMetrics | None = None) -> str:
    """The process-wide callback metrics (or `registry`) as Prometheus text."""
    return (registry or metrics).render()
