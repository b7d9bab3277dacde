"""smsgate callback service: SMS_EVENTS to HTTP callbacks, retried, signed, dead-lettered."""

from smsgate_callback.metrics import CallbackMetrics, metrics, render_metrics
from smsgate_callback.service import CallbackService, run_callback
from smsgate_callback.signing import sign, verify

__all__ = [
    "CallbackMetrics",
    "CallbackService",
    "metrics",
    "render_metrics",
    "run_callback",
    "sign",
    "verify",
]
