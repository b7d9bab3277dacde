"""From config to webhooks: the gateway url and its switches, the list, inheritance, errors."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
import smsgate_callback
from smsgate import subjects
from smsgate.config import CallbackConfig, ConfigError, parse
from smsgate_callback.service import webhook_specs
from smsgate_callback.webhook import _env_proxy


def specs(**callback: Any) -> list[Any]:
    return webhook_specs(msgspec.convert(callback, CallbackConfig))


def test_the_public_names() -> None:
    assert sorted(smsgate_callback.__all__) == [
        "CallbackMetrics",
        "CallbackService",
        "metrics",
        "render_metrics",
        "run_callback",
        "sign",
        "verify",
    ]


def test_no_url_and_no_webhooks_means_nothing_to_do() -> None:
    assert specs() == []


def test_the_gateway_url_becomes_the_gateway_webhook() -> None:
    [gateway] = specs(url="http://10.0.0.5/api/http-sms/receive", secret="s", extra={"k": "v"})
    assert gateway.name == "gateway"
    assert gateway.consumer == "callback-gateway"
    assert gateway.target.format == "gateway"
    assert gateway.target.secret == "s"
    assert gateway.kinds == ("inbound", "result", "report")
    assert gateway.filter_subjects() == [
        "sms.event.result.*",
        "sms.event.report.*",
        "sms.event.inbound.*",
    ]
    assert gateway.target.style.extra == (("k", "v"),)
    assert (gateway.policy.initial, gateway.policy.maximum, gateway.policy.max_age) == (
        1.0,
        300.0,
        86400.0,
    )
    assert gateway.start == "new"
    assert gateway.verify is True


@pytest.mark.parametrize(
    ("switches", "kinds"),
    [
        ({"inbound": False}, ("result", "report")),
        ({"results": False, "reports": False}, ("inbound",)),
        ({"inbound": False, "results": False, "reports": False}, None),
    ],
)
def test_the_three_switches_are_independent(
    switches: dict[str, bool], kinds: tuple[str, ...] | None
) -> None:
    found = specs(url="http://r.test/", **switches)
    assert (found[0].kinds if found else None) == kinds


def test_webhooks_inherit_what_they_do_not_set() -> None:
    gateway, crm, audit = specs(
        url="http://r.test/gw",
        timeout=4,
        backoff_initial=0.5,
        verify=False,
        ca_file=__file__,
        webhooks=[
            {
                "name": "crm",
                "url": "https://crm.test/sms",
                "format": "json",
                "events": ["inbound"],
                "ports": ["lte-1", "lte-2"],
                "timeout": 2,
                "max_age": 60,
                "verify": True,
                "concurrency": 2,
                "ordered": True,
            },
            {"name": "audit", "url": "http://a.test/", "format": "form", "events": ["port"]},
        ],
    )
    assert gateway.target.timeout == 4
    assert crm.target.timeout == 2
    assert audit.target.timeout == 4
    assert crm.policy.max_age == 60
    assert crm.policy.initial == 0.5
    assert crm.verify is True
    assert audit.verify is False
    assert crm.ca_file == __file__
    assert crm.filter_subjects() == [
        subjects.event("inbound", "lte-1"),
        subjects.event("inbound", "lte-2"),
    ]
    assert (crm.concurrency, crm.ordered) == (2, True)
    assert audit.filter_subjects() == ["sms.event.port.*"]
    assert audit.target.style.extra == ()  # [callback.extra] belongs to the gateway url


def test_config_errors_name_the_webhook() -> None:
    with pytest.raises(ConfigError, match="duplicate names"):
        specs(url="http://r.test/", webhooks=[{"name": "gateway", "url": "http://x.test/"}])
    with pytest.raises(ConfigError, match="webhook 'w': callback url 'ftp://x'"):
        specs(webhooks=[{"name": "w", "url": "ftp://x"}])
    with pytest.raises(ConfigError, match="webhook 'w': events: empty"):
        specs(webhooks=[{"name": "w", "url": "http://x.test/", "events": []}])
    with pytest.raises(ConfigError, match=r"invalid port name 'lte\.1'"):
        specs(webhooks=[{"name": "w", "url": "http://x.test/", "ports": ["lte.1"]}])
    with pytest.raises(ConfigError, match=r"callback: ca_file '/no/ca\.pem': no such file"):
        specs(url="https://r.test/", ca_file="/no/ca.pem")
    with pytest.raises(ConfigError, match="callback: unknown time zone"):
        specs(url="http://r.test/", time_zone="Nowhere/Else")


def test_a_toml_callback_section_decodes() -> None:
    config = parse(
        {
            "callback": {
                "url": "http://10.0.0.5/api/http-sms/receive",
                "reports": False,
                "params": {"phonenumber": "phone", "reason": "why"},
                "status_text": {"delivered": "DELIVRD"},
                "webhooks": [
                    {
                        "name": "crm",
                        "url": "https://crm.test/",
                        "format": "json",
                        "headers": {"Authorization": "Bearer x"},
                        "start": "all",
                    }
                ],
            }
        }
    )
    gateway, crm = webhook_specs(config.callback)
    assert gateway.target.style.params.phonenumber == "phone"
    assert gateway.target.style.status_text["delivered"] == "DELIVRD"
    assert crm.target.headers == {"Authorization": "Bearer x"}
    assert crm.start == "all"


def test_calls_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    url = httpx.URL("http://crm.example.com/hooks")
    assert _env_proxy(url) is None
    monkeypatch.setenv("HTTP_PROXY", "proxy.local:3128")
    assert _env_proxy(url) == "http://proxy.local:3128"
    assert _env_proxy(httpx.URL("https://crm.example.com/")) is None
    monkeypatch.setenv("ALL_PROXY", "http://all.local:8080")
    assert _env_proxy(httpx.URL("https://crm.example.com/")) == "http://all.local:8080"
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert _env_proxy(url) is None
