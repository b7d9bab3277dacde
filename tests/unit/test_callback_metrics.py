"""Callback counters and their Prometheus text."""

from __future__ import annotations

from smsgate_callback.metrics import CallbackMetrics, render_metrics


def test_render_counters_histogram_and_gauge() -> None:
    registry = CallbackMetrics()
    registry.deliveries.inc("gateway", "delivered")
    registry.deliveries.inc("gateway", "delivered")
    registry.deliveries.inc("crm", "dead")
    registry.attempts.inc("gateway", "5xx")
    registry.dead_letters.inc("crm", "permanent")
    registry.latency.observe(0.05, "gateway")
    registry.latency.observe(0.3, "gateway")
    registry.latency.observe(60.0, "gateway")
    registry.in_flight.inc("gateway")
    registry.in_flight.inc("gateway")
    registry.in_flight.dec("gateway")
    text = render_metrics(registry)
    lines = text.splitlines()
    assert "# TYPE smsgate_callback_deliveries_total counter" in lines
    assert 'smsgate_callback_deliveries_total{webhook="gateway",outcome="delivered"} 2' in lines
    assert 'smsgate_callback_deliveries_total{webhook="crm",outcome="dead"} 1' in lines
    assert 'smsgate_callback_attempts_total{webhook="gateway",result="5xx"} 1' in lines
    assert 'smsgate_callback_dead_letters_total{webhook="crm",reason="permanent"} 1' in lines
    assert "# TYPE smsgate_callback_latency_seconds histogram" in lines
    assert 'smsgate_callback_latency_seconds_bucket{webhook="gateway",le="0.05"} 1' in lines
    assert 'smsgate_callback_latency_seconds_bucket{webhook="gateway",le="0.5"} 2' in lines
    assert 'smsgate_callback_latency_seconds_bucket{webhook="gateway",le="30"} 2' in lines
    assert 'smsgate_callback_latency_seconds_bucket{webhook="gateway",le="+Inf"} 3' in lines
    assert 'smsgate_callback_latency_seconds_sum{webhook="gateway"} 60.35' in lines
    assert 'smsgate_callback_latency_seconds_count{webhook="gateway"} 3' in lines
    assert 'smsgate_callback_in_flight{webhook="gateway"} 1' in lines
    assert text.endswith("\n")
    assert registry.deliveries.get("gateway", "delivered") == 2
    assert registry.latency.count("gateway") == 3


def test_label_values_are_escaped() -> None:
    registry = CallbackMetrics()
    registry.attempts.inc('we"ird\\', "2xx")
    assert 'webhook="we\\"ird\\\\"' in registry.render()


def test_an_empty_registry_still_declares_its_families() -> None:
    text = CallbackMetrics().render()
    assert text.count("# TYPE") == 5
    assert "{" not in text
