"""The agent's Prometheus metrics, per port (served on `agent.metrics_listen`, and by dev
mode's API): what each port's state says when scraped, and the counters of what happened."""

from __future__ import annotations

from collections.abc import Iterable

from smsgate import contracts
from smsgate.metrics import Counter, Gauge, render


class AgentMetrics:
    """Counters the ports add to as things happen; the rest is read from their states."""

    def __init__(self) -> None:
        self.reports = Counter(
            "smsgate_agent_reports_total",
            "Delivery reports, by port and state (delivered, failed, expired).",
            ("port", "state"),
        )
        self.at_errors = Counter(
            "smsgate_agent_at_errors_total",
            "AT commands answered with an error (ERROR, +CMS ERROR, +CME ERROR), by port.",
            ("port",),
        )
        self.restarts = Counter(
            "smsgate_agent_modem_restarts_total",
            "Modem recoveries (reopen, reset) after it stopped answering or vanished, by port.",
            ("port",),
        )

    def render(self, states: Iterable[contracts.PortState]) -> str:
        sent = Counter("smsgate_agent_sent_total", "Messages sent, by port.", ("port",))
        failed = Counter("smsgate_agent_failed_total", "Messages failed, by port.", ("port",))
        received = Counter(
            "smsgate_agent_received_total", "Inbound SMS received, by port.", ("port",)
        )
        signal = Gauge("smsgate_agent_signal_dbm", "Signal strength, by port.", ("port",))
        queue = Gauge(
            "smsgate_agent_queue", "Jobs waiting for the port (its own pinned ones).", ("port",)
        )
        status = Gauge(
            "smsgate_agent_port_status", "1 for the port's current status.", ("port", "status")
        )
        for state in states:
            sent.inc(state.port, amount=state.sent)
            failed.inc(state.port, amount=state.failed)
            received.inc(state.port, amount=state.received)
            if state.signal is not None:
                signal.set(state.signal, state.port)
            queue.set(state.queue, state.port)
            status.set(1, state.port, state.status.value)
        families = (sent, failed, received, self.reports, self.at_errors, self.restarts)
        return render((*families, signal, queue, status))
