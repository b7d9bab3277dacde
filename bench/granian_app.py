"""The gateway API as an app factory for granian (`SMSGATE_BENCH_CONFIG` names the TOML)."""

from __future__ import annotations

import os

from smsgate.config import load
from smsgate_api.app import ApiApp, create_app


def app() -> ApiApp:
    return create_app(load(os.environ["SMSGATE_BENCH_CONFIG"]))
