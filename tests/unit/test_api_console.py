"""The console's pure parts: session cookies, the settings view, the traffic tally, port diffs."""

from __future__ import annotations

import base64
import datetime as dt

import msgspec
from smsgate import contracts
from smsgate.config import ApiConfig, ApiUser, CallbackConfig, Config, Webhook
from smsgate.contracts import PortState, PortStatus
from smsgate_api.auth import User
from smsgate_api.console import Seen, port_changes
from smsgate_api.port_choice import PortTable
from smsgate_api.session import Sessions
from smsgate_api.settings import mask_url, settings_view
from smsgate_api.traffic import WINDOW, Traffic, classify

USERS = [
    ApiUser(name="ops", password="scrypt:00:00", token="tok-ops", admin=True),
    ApiUser(name="shop", password="shoppw", ports=["lte-1", "lte-2"]),
]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- sessions ------------------------------------------------------------------------------


def test_a_cookie_names_its_user_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(USERS, clock=clock)
    cookie, issued = sessions.issue("shop", lifetime=60)
    read = sessions.read(cookie)
    assert read == issued
    assert sessions.user(issued).name == "shop"
    assert sessions.user(issued).ports == ("lte-1", "lte-2")
    clock.now += 61
    assert sessions.read(cookie) is None


def test_every_process_with_the_same_users_accepts_the_cookie() -> None:
    cookie, _ = Sessions(USERS).issue("ops")
    assert Sessions(list(USERS)).read(cookie) is not None


def test_a_changed_password_signs_everyone_out() -> None:
    cookie, _ = Sessions(USERS).issue("ops")
    changed = [USERS[0], msgspec.structs.replace(USERS[1], password="new")]
    assert Sessions(changed).read(cookie) is None


def test_forged_or_broken_cookies_are_refused() -> None:
    sessions = Sessions(USERS)
    cookie, _ = sessions.issue("shop")
    payload, _, signature = cookie.partition(".")
    forged = msgspec.json.encode(["ops", 9_999_999_999, "x"])
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    for bad in [
        f"{forged_payload}.{signature}",
        payload,
        f"{payload}.",
        f"{payload}.{signature[:-2]}",
        "",
        "not a cookie",
        "é.é",
    ]:
        assert sessions.read(bad) is None, bad


# --- settings ------------------------------------------------------------------------------


def _config() -> Config:
    return Config(
        api=ApiConfig(users=USERS, cors=True, cors_origins=["https://ops.example"]),
        callback=CallbackConfig(
            url="http://user:hunter2@10.0.0.5:8000/sms?apikey=s3cret&box=1",
            reports=False,
            secret="hmac-key",
            extra={"token": "abc", "site": "A"},
            webhooks=[
                Webhook(
                    name="crm",
                    url="https://crm.example/hook?sig=zzz",
                    format="json",
                    secret="k",
                    headers={"Authorization": "Bearer qq"},
                )
            ],
        ),
    )


def test_settings_never_show_secrets() -> None:
    view = settings_view(_config(), User(name="ops", admin=True))
    text = msgspec.json.encode(view).decode()
    for secret in ["scrypt", "shoppw", "tok-ops", "hunter2", "s3cret", "hmac-key", "abc", "zzz"]:
        assert secret not in text, secret
    assert "Bearer" not in text
    assert view.callback.url == "http://user:***@10.0.0.5:8000/sms?apikey=***&box=1"
    assert view.callback.reports is False
    assert view.callback.signed is True
    assert view.callback.extra == ["site", "token"]
    assert view.callback.webhooks[0].headers == ["Authorization"]
    assert view.cors.enabled is True
    assert view.cors.origins == ["https://ops.example"]
    assert [u.name for u in view.users] == ["ops", "shop"]
    assert view.users[0].token is True
    assert view.users[1].ports == ["lte-1", "lte-2"]


def test_only_admins_see_every_user() -> None:
    view = settings_view(_config(), User(name="shop", ports=("lte-1", "lte-2")))
    assert [u.name for u in view.users] == ["shop"]
    assert view.users_hidden == 1


def test_mask_url_leaves_plain_urls_alone() -> None:
    assert (
        mask_url("http://10.0.0.5/api/http-sms/receive") == "http://10.0.0.5/api/http-sms/receive"
    )
    assert mask_url("https://a.example/?password=x&q=1") == "https://a.example/?password=***&q=1"


# --- traffic -------------------------------------------------------------------------------

NOW = 1_800_000_000.0


def test_traffic_counts_per_minute_over_the_last_hour() -> None:
    traffic = Traffic()
    traffic.add("sent", "lte-1", NOW - 5, NOW)
    traffic.add("sent", "lte-2", NOW - 5, NOW)
    traffic.add("failed", "lte-1", NOW - 65, NOW)
    traffic.add("received", "lte-1", NOW - 3600 * 2, NOW)  # too old: dropped
    series = traffic.series(NOW)
    assert series.minutes == WINDOW == len(series.sent)
    assert series.end == (int(NOW // 60) + 1) * 60
    assert sum(series.sent) == 2
    assert series.sent[-1] + series.sent[-2] == 2
    assert sum(series.failed) == 1
    assert sum(series.received) == 0
    assert sum(traffic.series(NOW, ["lte-2"]).sent) == 1
    assert sum(traffic.series(NOW, ["lte-2"]).failed) == 0
    # An hour later it has all scrolled out.
    traffic.prune(NOW + 3600)
    assert sum(traffic.series(NOW + 3600).sent) == 0


def _event(kind: str, **fields: object) -> bytes:
    base = {"type": kind, "v": 1, "event_id": "e", "port": "lte-1", "time": "2026-11-24T21:40:07Z"}
    return msgspec.json.encode({**base, **fields})


def test_classify_reads_only_what_it_needs() -> None:
    when = dt.datetime(2026, 11, 24, 21, 40, 7, tzinfo=dt.UTC).timestamp()
    assert classify("result", _event("result", status="sent")) == ("sent", when)
    assert classify("result", _event("result", status="failed")) == ("failed", when)
    assert classify("result", _event("result", status="unknown")) == ("unknown", when)
    # a status a later version may add counts as not sent, never as sent
    assert classify("result", _event("result", status="other")) == ("failed", when)
    assert classify("report", _event("report", state="delivered")) == ("delivered", when)
    assert classify("report", _event("report", state="expired")) == ("undelivered", when)
    assert classify("report", _event("report", state="unmatched")) is None
    assert classify("inbound", _event("inbound", text="hi")) == ("received", when)
    assert classify("port", _event("port")) is None
    assert classify("result", b"{not json") is None


# --- port changes --------------------------------------------------------------------------


def _state(name: str, status: PortStatus, updated: dt.datetime) -> PortState:
    return PortState(
        port=name, agent="a", device="/dev/x", status=status, updated=updated, heartbeat_interval=5
    )


def test_port_changes_send_everything_first_then_only_what_changed() -> None:
    table = PortTable()
    now = contracts.utcnow()
    for name in ("lte-1", "lte-2", "lte-3"):
        table.apply(name, contracts.encode(_state(name, PortStatus.READY, now)))
    shop = User(name="shop", ports=("lte-1", "lte-2"))
    seen: Seen = {}
    first = port_changes(table, shop, seen, full=True)
    assert first is not None
    assert first.full
    assert sorted(s.port for s in first.ports) == ["lte-1", "lte-2"]
    assert port_changes(table, shop, seen, full=False) is None
    # A heartbeat that changes nothing else is not sent.
    later = now + dt.timedelta(seconds=1)
    table.apply("lte-1", contracts.encode(_state("lte-1", PortStatus.READY, later)))
    assert port_changes(table, shop, seen, full=False) is None
    table.apply("lte-2", contracts.encode(_state("lte-2", PortStatus.DISABLED, now)))
    table.apply("lte-3", contracts.encode(_state("lte-3", PortStatus.BUSY, now)))
    update = port_changes(table, shop, seen, full=False)
    assert update is not None
    assert [(s.port, s.status) for s in update.ports] == [("lte-2", PortStatus.DISABLED)]
    table.apply("lte-1", None)
    update = port_changes(table, shop, seen, full=False)
    assert update is not None
    assert update.removed == ["lte-1"]
    assert update.ports == []


def test_a_port_whose_heartbeats_stopped_is_sent_as_down() -> None:
    table = PortTable()
    old = contracts.utcnow() - dt.timedelta(seconds=60)
    table.apply("lte-1", contracts.encode(_state("lte-1", PortStatus.READY, old)))
    update = port_changes(table, User(name="ops"), {}, full=True)
    assert update is not None
    assert update.ports[0].status is PortStatus.DOWN
