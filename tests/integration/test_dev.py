"""`smsgate dev` as a user runs it: a real process, its own state directory, random ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from smsgate.embedded import LOCK_FILE, free_port

PATIENCE = 60.0  # a guard against a hang, never a measured limit
BANNER = "smsgate dev is running."


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    listen: str

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_banner(self) -> None:
        deadline = time.monotonic() + PATIENCE
        while BANNER not in self.stdout():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no banner:\n{self.stdout()}\n{self.stderr()}")
            time.sleep(0.05)

    def wait(self) -> int:
        try:
            return self.process.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"still running:\n{self.stdout()}\n{self.stderr()}") from None


StartDev = Callable[..., Dev]


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[StartDev]:
    started: list[Dev] = []

    def start(state: Path, listen: str | None = None) -> Dev:
        index = len(started)
        where = listen or f"127.0.0.1:{free_port()}"
        out, err = tmp_path / f"dev{index}.out", tmp_path / f"dev{index}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "smsgate_cli",
                    "dev",
                    "--listen",
                    where,
                    "--state-dir",
                    str(state),
                    "--ports",
                    "1",
                ],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        dev = Dev(process, out, err, where)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.process.poll() is None:
            dev.process.send_signal(signal.SIGTERM)
            try:
                dev.process.wait(30)
            except subprocess.TimeoutExpired:
                dev.process.kill()
                dev.process.wait()


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return bool(re.search(r"^State:\s+Z", status, re.MULTILINE))


def test_kill_9_takes_nats_along_and_a_second_start_on_a_store_in_use_refuses(
    start_dev: StartDev, tmp_path: Path
) -> None:
    start = start_dev
    state = tmp_path / "state"
    first = start(state)
    first.wait_banner()
    holder = (state / "nats" / LOCK_FILE).read_text()
    match = re.search(r"nats-server pid (\d+)", holder)
    assert match, holder
    nats_pid = int(match.group(1))
    assert not gone(nats_pid)
    # The simulator's devices live in the state directory, not in /tmp.
    assert str(state) in (state / "devices.json").read_text()

    second = start(state)
    assert second.wait() != 0
    assert BANNER not in second.stdout()
    assert f"in use by pid {first.process.pid}" in second.stderr(), second.stderr()
    assert f"nats-server pid {nats_pid}" in second.stderr()
    assert not gone(nats_pid)  # the refused start left the running one alone

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    deadline = time.monotonic() + PATIENCE
    while not gone(nats_pid):
        assert time.monotonic() < deadline, f"nats-server {nats_pid} outlived its parent"
        time.sleep(0.05)

    third = start(state)
    third.wait_banner()
    # One /metrics serves everything in dev mode: the API, the agent, the callback service.
    deadline = time.monotonic() + PATIENCE
    while True:
        with urllib.request.urlopen(f"http://{third.listen}/metrics", timeout=30) as response:
            text = response.read().decode()
        if 'smsgate_agent_port_status{port="lte-1",' in text:  # once the agent has its port
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    for family in ("smsgate_api_requests_total", "smsgate_agent_sent_total", "smsgate_callback_"):
        assert f"# TYPE {family}" in text, family
    third.process.send_signal(signal.SIGTERM)
    assert third.wait() == 0, third.stderr()


def test_listen_address_in_use_fails_before_the_banner(start_dev: StartDev, tmp_path: Path) -> None:
    start = start_dev
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = start(tmp_path / "state", f"127.0.0.1:{port}")
        code = dev.wait()
    assert code != 0
    assert BANNER not in dev.stdout()
    assert f"cannot listen on 127.0.0.1:{port}" in dev.stderr(), dev.stderr()
    assert "--listen" in dev.stderr()
