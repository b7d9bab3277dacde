"""`smsgate dev` as a user runs it: a real process, its own state directory, random ports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
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


def descendants(pid: int) -> dict[int, str]:
    """Every live process under `pid`: pid -> its command line."""
    found: dict[int, str] = {}
    stack = [pid]
    while stack:
        parent = stack.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                for child in (task / "children").read_text().split():
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                    found[int(child)] = cmdline.decode(errors="replace")
                    stack.append(int(child))
    return found


def api_processes(dev: Dev) -> list[int]:
    """The dev process's API processes (multiprocessing's spawned workers)."""
    return [
        pid
        for pid, cmdline in descendants(dev.process.pid).items()
        if "multiprocessing.spawn" in cmdline
    ]


def wait_gone(pids: Iterable[int]) -> None:
    deadline = time.monotonic() + PATIENCE
    for pid in pids:
        while not gone(pid):
            assert time.monotonic() < deadline, f"process {pid} outlived smsgate dev"
            time.sleep(0.05)


def listening_inodes(port: int) -> list[str]:
    """The socket inodes listening on loopback `port` (from /proc/net/tcp)."""
    inodes = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if local == f"0100007F:{port:04X}" and state == "0A":
            inodes.append(inode)
    return inodes


def sockets_of(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


def test_sendsms_through_the_api_process_then_sigterm_stops_every_process(
    start_dev: StartDev, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    dev = start_dev(state)
    dev.wait_banner()
    [api] = api_processes(dev)  # api.workers = 1 by default, as `smsgate api`
    # The port is bound once, by dev, and the API process serves that very socket.
    port = int(dev.listen.rsplit(":", 1)[1])
    [inode] = listening_inodes(port)
    assert inode in sockets_of(dev.process.pid)
    assert inode in sockets_of(api)

    user = json.loads((state / "credentials.json").read_text())
    query = urllib.parse.urlencode(
        {
            "username": user["name"],
            "password": user["password"],
            "phonenumber": "10086",
            "message": "ye",
            "timeout": "60",
            "id": "edeb7540",
        }
    )
    with urllib.request.urlopen(f"http://{dev.listen}/sendsms?{query}", timeout=90) as response:
        body = json.loads(response.read())
    assert body["report"]["0"]["result"] == "sent", body
    assert body["report"]["0"]["id"] == "edeb7540"
    # The agent's spool is dev's state too, not a `.smsgate` in the working directory.
    assert (state / "spool-dev.sqlite").is_file()
    assert not (tmp_path / ".smsgate").exists()

    everyone = descendants(dev.process.pid)
    assert api in everyone
    dev.process.send_signal(signal.SIGTERM)
    assert dev.wait() == 0, dev.stderr()
    wait_gone(everyone)
    # The API stopped before the agent that answers its requests.
    log = dev.stderr()
    assert log.index(f"Finished server process [{api}]") < log.index("agent dev draining"), log


def test_an_api_process_that_dies_stops_dev_saying_so(start_dev: StartDev, tmp_path: Path) -> None:
    dev = start_dev(tmp_path / "state")
    dev.wait_banner()
    [api] = api_processes(dev)
    everyone = descendants(dev.process.pid)
    os.kill(api, signal.SIGKILL)
    assert dev.wait() == 1, dev.stderr()
    assert f"the API process (pid {api}) was killed by SIGKILL" in dev.stderr(), dev.stderr()
    wait_gone(everyone)


def test_kill_9_takes_every_child_along_and_a_second_start_on_a_store_in_use_refuses(
    start_dev: StartDev, tmp_path: Path
) -> None:
    start = start_dev
    state = tmp_path / "state"
    first = start(state)
    first.wait_banner()
    children = descendants(first.process.pid)
    assert api_processes(first)
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
    assert nats_pid in children
    wait_gone(children)  # nats-server and the API process(es) included

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
