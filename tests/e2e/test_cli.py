"""`smsgate send|status|ports|tail` against the real farm, as a person would type them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from pathlib import Path

import pytest
from smsgate import contracts
from smsgate_cli import client, dev
from smsgate_cli import main as cli
from smsgate_sim.simulator import Simulator

from tests.e2e.conftest import PASSWORD, USER
from tests.integration.callback_fixtures import Receiver


async def smsgate(capsys: pytest.CaptureFixture[str], api: str, *args: str) -> tuple[int, str]:
    """Run the CLI in a thread (it has its own event loop) and return (exit code, stdout)."""
    argv = [*args, "--api", api, "--user", f"{USER}:{PASSWORD}"]
    code = await asyncio.to_thread(cli.main, argv)
    return code, capsys.readouterr().out


async def test_send_status_ports(
    farm: tuple[str, Receiver, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    api, _, sim = farm
    code, out = await smsgate(capsys, api, "send", "+4915112345678,10086", "hello € [x]")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("[1/2] +4915112345678: sent id=")
    assert lines[1].startswith("[2/2] 10086: sent id=")
    message_id = lines[0].split("id=")[1].split()[0]

    code, out = await smsgate(capsys, api, "status", message_id)
    assert code == 0
    assert json.loads(out)["id"] == message_id

    code, out = await smsgate(capsys, api, "ports", "--json")
    assert code == 0
    assert sorted(p["port"] for p in json.loads(out)) == ["lte-1", "lte-2"]

    code, out = await smsgate(capsys, api, "ports", "disable", "lte-2")
    assert (code, out.strip()) == (0, "lte-2: disabled")
    code, out = await smsgate(capsys, api, "ports")
    row = next(line for line in out.splitlines() if line.startswith("lte-2"))
    assert "disabled" in row.split()
    assert len(sim.sent()) == 2


async def test_history_search_status_timeline_and_export(
    farm: tuple[str, Receiver, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    api, _, _ = farm
    code, out = await smsgate(capsys, api, "send", "+4915100000077", "find me later")
    assert code == 0, out
    message_id = out.split("id=")[1].split()[0]

    async def listed() -> str:
        for _ in range(200):
            code, out = await smsgate(capsys, api, "history", "--number", "+49 151 00000077")
            assert code == 0
            if "delivered" in out:
                return out
            await asyncio.sleep(0.1)
        raise AssertionError(f"never delivered in the history: {out}")

    table = (await listed()).splitlines()
    assert table[0].split() == ["TIME", "DIR", "NUMBER", "STATE", "PORT", "USER", "ID", "TEXT"]
    assert message_id in table[1]
    assert "find me later" in table[1]

    code, out = await smsgate(capsys, api, "status", message_id)
    assert code == 0
    steps = [step["step"] for step in json.loads(out)["timeline"]]
    assert steps == ["queued", "sending", "sent", "delivered"]  # a one-part message

    code, out = await smsgate(capsys, api, "history", "--export", "csv", "--text", "find me")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].startswith("id,direction,number,text,state")
    assert len(rows) == 2
    assert rows[1].startswith(f"{message_id},out,+4915100000077,find me later,delivered")


async def test_errors_are_plain_sentences(
    farm: tuple[str, Receiver, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    api, _, _ = farm
    code = await asyncio.to_thread(
        cli.main, ["send", "12ab", "x", "--api", api, "--user", f"{USER}:{PASSWORD}"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("smsgate: POST /api/v1/messages: 400")
    code = await asyncio.to_thread(cli.main, ["ports", "--api", api, "--user", f"{USER}:wrong"])
    assert code == 1
    assert ": 401 " in capsys.readouterr().err


async def test_tail_follows_events(
    farm: tuple[str, Receiver, Simulator], capsys: pytest.CaptureFixture[str]
) -> None:
    api, _, _ = farm
    lines: list[str] = []
    async with client.Client(client.ApiTarget(api, USER, PASSWORD)) as http:

        async def follow() -> None:
            async for _, data in http.events("result", None, since=0):
                lines.append(client.event_line(data))

        task = asyncio.create_task(follow())
        code, _ = await smsgate(capsys, api, "send", "+4915112345678", "tail me")
        assert code == 0
        async with asyncio.timeout(20):
            while not lines:  # noqa: ASYNC110 - the stream fills a plain list
                await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lines[0].split()[1] == "result"
    assert "sent   id=" in lines[0]
    assert "to=+4915112345678" in lines[0]


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (["sent", "delivered"], 0),
        (["sent", "failed"], 1),
        (["sent", "unknown"], 3),  # may have been sent: not a failure to retry blindly
        (["unknown", "failed"], 1),
        (["sending"], 0),  # still under way when --wait ran out
    ],
)
def test_send_exit_status_tells_failed_from_unknown(states: list[str], code: int) -> None:
    assert client.send_exit_code(states) == code


def test_port_table_counts_unknown_outcomes_apart() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    state = contracts.PortState(
        port="lte-1",
        agent="a",
        device="/dev/x",
        status=contracts.PortStatus.READY,
        sent=9,
        failed=2,
        unknown=1,
        updated=now,
    )
    header, row = (line.split() for line in client.port_table([state], now).splitlines())
    counts = dict(zip(header[header.index("SENT") :], row[row.index("9") :], strict=False))
    assert counts == {"SENT": "9", "FAILED": "2", "UNKNOWN": "1", "QUEUE": "0"}


def test_port_table_marks_silent_agents_down() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    fresh = contracts.PortState(
        port="lte-1",
        agent="a",
        device="/dev/x",
        status=contracts.PortStatus.READY,
        signal=-71,
        updated=now,
        heartbeat_interval=5,
    )
    silent = contracts.PortState(
        port="lte-2",
        agent="b",
        device="/dev/y",
        status=contracts.PortStatus.READY,
        updated=now - dt.timedelta(seconds=16),
        heartbeat_interval=5,
    )
    table = client.port_table([silent, fresh], now).splitlines()
    assert table[0].split()[:3] == ["PORT", "AGENT", "STATUS"]
    assert table[1].split()[:4] == ["lte-1", "a", "ready", "-71"]
    assert table[2].split()[:3] == ["lte-2", "b", "down"]


def test_target_from_dev_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSGATE_USER", raising=False)
    state = tmp_path
    (state / "credentials.json").write_text(json.dumps({"name": "u", "password": "p"}))
    where = client.target("http://h:1/", None, state)
    assert (where.api, where.user, where.password) == ("http://h:1", "u", "p")
    with pytest.raises(client.ClientError, match="no credentials"):
        client.target(None, None, state / "missing")


def test_cli_uses_the_credentials_of_the_latest_dev_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scripts/run, then scripts/run --user smsuser:pw123: the client must use pw123.
    monkeypatch.delenv("SMSGATE_USER", raising=False)
    state = str(tmp_path / "state")
    generated = dev.prepare_state(dev.DevOptions(state_dir=state))[1]
    assert client.target(None, None, Path(state)).password == generated.password
    dev.prepare_state(dev.DevOptions(state_dir=state, user="smsuser:pw123"))
    where = client.target(None, None, Path(state))
    assert (where.user, where.password) == ("smsuser", "pw123")
    # A later run without --user keeps taking the credentials the client knows.
    _, again = dev.prepare_state(dev.DevOptions(state_dir=state))
    assert (again.name, again.password) == ("smsuser", "pw123")
    assert (Path(state) / "credentials.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (
            contracts.SendResult(
                event_id="e",
                port="lte-1",
                time=contracts.utcnow(),
                id="m",
                to="1",
                status=contracts.SendStatus.SENT,
            ),
            "result",
        ),
        (
            contracts.DeliveryReport(
                event_id="e",
                port="lte-1",
                time=contracts.utcnow(),
                id="m",
                to="1",
                state=contracts.DeliveryState.DELIVERED,
            ),
            "report",
        ),
        (
            contracts.InboundSms(
                event_id="e",
                port="lte-1",
                time=contracts.utcnow(),
                id="m",
                sender="1",
                text="hi",
                smsc_time=contracts.utcnow(),
            ),
            "inbound",
        ),
    ],
)
def test_tail_names_events_as_type_takes_them(event: contracts.Event, kind: str) -> None:
    line = client.event_line(contracts.encode(event).decode())
    assert line.split()[1] == kind
    assert kind in cli.build_parser().parse_args(["tail", "--type", kind]).type
