"""`smsgate dev`: the whole farm on one machine, for a first five minutes that work.

An embedded nats-server (data in `.smsgate/`), a simulator with virtual modems
`lte-1`..`lte-8`, one agent, the callback service and the history store (SQLite in
`.smsgate/history.db` unless `[history] url` says otherwise) in this process, and the
API in a process of its own (`api.workers` of them), on the socket this one binds.
All of it ends with this process, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import signal
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import msgspec
from smsgate.config import (
    AgentConfig,
    AgentPort,
    ApiUser,
    Config,
    HistoryConfig,
    NatsConfig,
    SendPolicy,
    parse_listen,
)
from smsgate.embedded import EmbeddedNats, StoreInUse

from smsgate_cli.receiver import ConsoleReceiver

log = logging.getLogger("smsgate.dev")


class DevError(Exception):
    """Dev mode cannot run on; the message says why."""


class DevStartError(DevError):
    """Dev mode cannot start; the message says why and what to do."""


CARRIER_NUMBER = "10086"


@dataclass(frozen=True)
class DevOptions:
    listen: str = "127.0.0.1:8080"
    fresh: bool = False
    callback_url: str | None = None
    user: str | None = None
    ports: int = 8
    state_dir: str = ".smsgate"


class Credentials(msgspec.Struct):
    name: str
    password: str


def credentials(state_dir: Path, given: str | None) -> Credentials:
    """The `--user` given, else the ones of the last run (generated on the first).

    Either way they are saved in the state dir as the ones this run's API takes, where the
    command-line client finds them: it must never try the credentials of an earlier run.
    """
    path = state_dir / "credentials.json"
    if given:
        name, sep, password = given.partition(":")
        if not sep or not name or not password:
            raise ValueError("--user takes NAME:PASSWORD")
        chosen = Credentials(name, password)
    elif path.exists():
        return msgspec.json.decode(path.read_bytes(), type=Credentials)
    else:
        chosen = Credentials("smsuser", secrets.token_urlsafe(12))
    path.touch(0o600)
    path.chmod(0o600)  # before the password is written
    path.write_bytes(msgspec.json.encode(chosen))
    return chosen


def banner(api: str, user: Credentials, devices: dict[str, str], numbers: dict[str, str]) -> str:
    q = urllib.parse.quote
    auth = f"username={q(user.name)}&password={q(user.password)}"
    first, second = sorted(devices)[:2] if len(devices) > 1 else (sorted(devices) * 2)[:2]
    return f"""
smsgate dev is running.
  API        {api}   (user {user.name!r}, password {user.password!r})
  console    {api}/   (the same user)
  modems     {", ".join(f"{p}={numbers.get(p, '?')}" for p in sorted(devices))}

Send an SMS (the gateway's own demo: a balance query to the carrier, who replies):
  wget -qO- "{api}/sendsms?{auth}&phonenumber={CARRIER_NUMBER}&timeout=60&id=edeb7540&message=ye"

Send from one virtual SIM to another ({first} -> {second}):
  curl -s "{api}/sendsms?{auth}&port={first}&phonenumber={q(numbers.get(second, ""))}&message=hello"

An SMS from outside to {first} (the carrier writes first):
  .venv/bin/smsgate sim inject --from {CARRIER_NUMBER} --text "Your bill is ready" --to-port {first}

Watch everything that happens, and the ports:
  .venv/bin/smsgate tail
  .venv/bin/smsgate ports --watch

JSON API:
  curl -s -u {user.name}:{user.password} -H 'content-type: application/json' \\
       -d '{{"to": ["+15551234567"], "text": "Hello from smsgate"}}' {api}/api/v1/messages
  curl -s -u {user.name}:{user.password} {api}/api/v1/ports

Press Ctrl-C to stop.
"""


def listen_socket(listen: str) -> socket.socket:
    """The API's listening socket, bound before anything else starts: a port in use fails
    at once, before the banner would send a user's requests to whoever holds it."""
    host, port = parse_listen(listen, "--listen")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise DevStartError(
            f"cannot listen on {listen}: {exc.strerror or exc}; another program (or another "
            "smsgate dev) has it: stop it, or choose another address with --listen HOST:PORT"
        ) from None
    sock.setblocking(False)
    return sock


def dev_history(history: HistoryConfig, state: Path) -> HistoryConfig:
    """The history in the state dir (SQLite, nothing to install) unless a url was given."""
    if history.url != HistoryConfig().url:
        return history
    return msgspec.structs.replace(history, url=f"sqlite:///{(state / 'history.db').resolve()}")


def prepare_state(options: DevOptions) -> tuple[Path, Credentials]:
    state = Path(options.state_dir)
    if options.fresh and state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    return state, credentials(state, options.user)


STOP_PATIENCE = 20.0  # seconds a part has to stop before it is cancelled


async def stopped(tasks: list[asyncio.Task[None]], patience: float) -> bool:
    """Wait for `tasks` to end; cancel those still running after `patience` seconds (a part
    that hangs must not keep dev, and its nats-server, running after Ctrl-C)."""
    _, late = await asyncio.wait(tasks, timeout=patience)
    for task in late:
        log.error("the %s did not stop within %gs: cancelled", task.get_name(), patience)
        task.cancel()
    await asyncio.wait(tasks, timeout=patience)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("the %s stopped with an error: %s", task.get_name(), task.exception())
    return not late


def ended(exitcode: int | None) -> str:
    """How a process ended, for a person: its status, or the signal that killed it."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


async def run_dev(base: Config, stop: asyncio.Event, options: DevOptions) -> None:
    """Run everything until `stop` is set; raises DevError when a part failed instead."""
    from smsgate.metrics import MetricsEndpoint
    from smsgate_agent.agent import Agent
    from smsgate_api.app import ApiProcesses
    from smsgate_api.auth import hash_password
    from smsgate_callback.metrics import render_metrics
    from smsgate_callback.service import run_callback
    from smsgate_history.service import run_history_store
    from smsgate_sim.network import CARRIER_BALANCE_REPLY
    from smsgate_sim.simulator import Simulator

    listener = listen_socket(options.listen)
    state, user = prepare_state(options)

    # Started on this (the main) thread, so the server dies with this process however it
    # ends, kill -9 included; a blocking start is fine before anything else runs.
    nats = EmbeddedNats(store_dir=state / "nats", die_with_parent=True)
    try:
        nats.start()
    except StoreInUse as exc:
        listener.close()
        raise DevStartError(str(exc)) from None
    sim_config = msgspec.structs.replace(
        base.sim,
        ports=options.ports,
        map_file=str(state / "devices.json"),
        # In the state directory, not /tmp: nothing is left behind if this process is killed.
        device_dir=base.sim.device_dir or str(state / "devices"),
        autoreply={CARRIER_NUMBER: CARRIER_BALANCE_REPLY, **base.sim.autoreply},
    )
    sim = Simulator(sim_config)
    await sim.start()
    (state / "sim.json").write_text(json.dumps({"control": sim.control_url}))
    receiver = ConsoleReceiver(base.callback.params)
    callback_url = options.callback_url or await receiver.start()
    config = msgspec.structs.replace(
        base,
        nats=NatsConfig(url=nats.url),
        api=msgspec.structs.replace(
            base.api,
            listen=options.listen,
            access_log=False,  # the console shows callbacks; a line per request would bury them
            users=[ApiUser(name=user.name, password=hash_password(user.password))],
        ),
        agent=AgentConfig(
            name="dev",
            ports=[AgentPort(name=name, device=device) for name, device in sim.devices.items()],
            # Virtual SIMs are never blocked by an operator: no pacing needed.
            policy=SendPolicy(min_interval=0.0, jitter=0.0),
            state_dir=str(state),  # its spool beside the rest of dev's state
        ),
        callback=msgspec.structs.replace(base.callback, url=callback_url),
        history=dev_history(base.history, state),
    )
    agent = Agent(config)
    # One /metrics for everything: the API processes add the agent's and the callback
    # service's, which this process serves them on a loopback port, to their own.
    others = MetricsEndpoint("127.0.0.1:0", "dev metrics", [agent.metrics_text, render_metrics])
    await others.start()
    # The API in processes of its own (`api.workers`, 1 by default, as `smsgate api`):
    # sharing this event loop with everything else, it answered about half as many
    # requests. They serve the socket bound above and end when this process ends.
    api = ApiProcesses(
        config, config.api.workers, sock=listener, metrics_from=[others.url], own_group=True
    )
    api.start()
    # Set once the API has stopped, so the parts that answer its requests outlive it.
    halt = asyncio.Event()
    services = [
        asyncio.create_task(agent.run(halt), name="agent"),
        asyncio.create_task(run_callback(config, stop=halt), name="callback"),
        asyncio.create_task(run_history_store(config, halt), name="history"),
    ]
    api_exit = asyncio.create_task(api.first_exit(), name="api")
    host, _, port = options.listen.rpartition(":")
    numbers = {name: sim.modem(name).sim.msisdn for name in sim.devices}
    print(banner(f"http://{host}:{port}", user, sim.devices, numbers), flush=True)
    signalled = asyncio.create_task(stop.wait())
    failure = None
    try:
        done, _ = await asyncio.wait(
            [*services, api_exit, signalled], return_when=asyncio.FIRST_COMPLETED
        )
        if api_exit in done:
            process = api_exit.result()
            failure = f"the API process (pid {process.pid}) {ended(process.exitcode)}"
        for task in services:
            if task in done and task.exception():
                failure = f"the {task.get_name()} stopped: {task.exception()}"
        if failure is not None:
            log.error("%s; smsgate dev stops", failure)
    finally:
        signalled.cancel()
        api_exit.cancel()
        # The API first: no request comes in while the parts that answer it stop.
        await api.stop()
        listener.close()
        halt.set()
        if not await stopped(services, STOP_PATIENCE):
            failure = failure or "a part did not stop in time"
        await others.stop()
        with contextlib.suppress(Exception):
            await receiver.stop()
        await sim.stop()
        await nats.astop()
    if failure is not None:
        raise DevError(failure)
