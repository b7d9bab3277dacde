"""`scripts/bench front` at a tiny size: both smsgate shapes come up and answer the load.

A smoke run, not a measurement: it asserts only that every request was answered 200,
and that CPU was counted for the processes that served them.
"""

from __future__ import annotations

import shutil

import pytest

from bench import bench_front
from bench.common import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("curl") is None, reason="needs wrk and curl"
)


def test_the_production_shape_and_dev_serve_the_load() -> None:
    results = bench_front.main(
        ["--seconds", "1", "--rounds", "1", "--workers", "2", "--no-kannel", "--no-write"]
    )
    assert set(results) == {"kannel", "production-2", "dev"}
    for name in ("production-2", "dev"):
        (round_,) = results[name]
        assert round_.requests > 0, name
        assert round_.errors == 0, name
    production = results["production-2"][0].cpu
    assert {"api", "api/python", "nats-server", "agent", "sim"} <= set(production)
    assert production["api"] > 0  # both workers served
    assert production["api/python"] > 0
    dev = results["dev"][0].cpu
    assert dev["dev"] > 0
    assert dev["dev/python"] > 0  # its API process served


def test_the_production_shape_from_another_checkout_serves_the_load_beside_this_one() -> None:
    """`--production-from CHECKOUT` (an A/B in one run): here the checkout is this one."""
    results = bench_front.main(
        [
            *("--seconds", "1", "--rounds", "1", "--workers", "2", "--no-dev"),
            *("--production-from", str(ROOT), "--no-kannel", "--no-write"),
        ]
    )
    assert set(results) == {"kannel", "production-2", "production-2-from"}
    (round_,) = results["production-2-from"]
    assert round_.requests > 0
    assert round_.errors == 0
    assert round_.cpu["api"] > 0
