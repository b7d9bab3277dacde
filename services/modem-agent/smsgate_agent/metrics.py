"""The agent's Prometheus metrics, per port (served on `agent.metrics_listen`, and by dev
mode's API): read from each port when scraped, nothing kept here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from smsgate import contracts
from smsgate.metrics import Counter, Gauge, render


@dataclass(frozen=True, slots=True)
class PortReading:
    """What one port shows a scrape: its state and the counts its parts keep."""

    state: contracts.PortState
    reports: Mapping[str, int]  # delivery reports published, by state
    at_errors: int  # AT commands answered with an error
    restarts: int  # recoveries after the modem was lost or stopped answering


def render_ports(ports: Iterable[PortReading]) -> str:
    """Every port's metrics in the Prometheus text format."""
    sent = Counter("smsgate_agent_sent_total", "Messages sent, by port.", ("port",))
    failed = Counter("smsgate_agent_failed_total", "Messages failed, by port.", ("port",))
    unknown = Counter(
        "smsgate_agent_unknown_total",
        "Messages whose outcome is unknown (the modem never answered a written part), by port.",
        ("port",),
    )
    received = Counter("smsgate_agent_received_total", "Inbound SMS received, by port.", ("port",))
    reports = Counter(
        "smsgate_agent_reports_total",
        "Delivery reports, by port and state (delivered, failed, expired).",
        ("port", "state"),
    )
    at_errors = Counter(
        "smsgate_agent_at_errors_total",
        "AT commands answered with ERROR, +CMS ERROR or +CME ERROR, by port.",
        ("port",),
    )
    restarts = Counter(
        "smsgate_agent_modem_restarts_total",
        "Modem recoveries after it was lost or stopped answering, by port.",
        ("port",),
    )
    signal = Gauge("smsgate_agent_signal_dbm", "Signal strength, by port.", ("port",))
    queue = Gauge(
        "smsgate_agent_queue", "Jobs waiting for the port (pinned ones included).", ("port",)
    )
    status = Gauge(
        "smsgate_agent_port_status", "1 for the port's current status.", ("port", "status")
    )
    for reading in ports:
        state, port = reading.state, reading.state.port
        sent.inc(port, amount=state.sent)
        failed.inc(port, amount=state.failed)
        unknown.inc(port, amount=state.unknown)
        received.inc(port, amount=state.received)
        for outcome, count in reading.reports.items():
            reports.inc(port, outcome, amount=count)
        at_errors.inc(port, amount=reading.at_errors)
        restarts.inc(port, amount=reading.restarts)
        if state.signal is not None:
            signal.set(state.signal, port)
        queue.set(state.queue, port)
        status.set(1, port, state.status.value)
    return render(
        (sent, failed, unknown, received, reports, at_errors, restarts, signal, queue, status)
    )
