"""`smsgate dev`: the whole farm on one machine, for a first five minutes that work.

An embedded nats-server (data in `.smsgate/`), a simulator with virtual modems
`lte-1`..`lte-8`, one agent and the callback service in this process, and the API in
a process of its own: sharing one event loop with the simulator and the agent, it
answered half as many requests (bench/RESULTS.md, "as deployed").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import msgspec
from smsgate.config import (
    AgentConfig,
    AgentPort,
    ApiUser,
    Config,
    NatsConfig,
    SendPolicy,
)
from smsgate.embedded import EmbeddedNats

from smsgate_cli.receiver import ConsoleReceiver

log = logging.getLogger("smsgate.dev")

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
    """The `--user` given, else the ones generated on the first run (kept in the state dir)."""
    if given:
        name, sep, password = given.partition(":")
        if not sep or not name or not password:
            raise ValueError("--user takes NAME:PASSWORD")
        return Credentials(name, password)
    path = state_dir / "credentials.json"
    if path.exists():
        return msgspec.json.decode(path.read_bytes(), type=Credentials)
    generated = Credentials("smsuser", secrets.token_urlsafe(12))
    path.write_bytes(msgspec.json.encode(generated))
    path.chmod(0o600)
    return generated


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


def prepare_state(options: DevOptions) -> tuple[Path, Credentials]:
    state = Path(options.state_dir)
    if options.fresh and state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    return state, credentials(state, options.user)


async def run_dev(base: Config, stop: asyncio.Event, options: DevOptions) -> None:
    from smsgate_agent.agent import run_agent
    from smsgate_api.app import log_settings, serve_worker
    from smsgate_api.auth import hash_password
    from smsgate_callback.service import run_callback
    from smsgate_sim.network import CARRIER_BALANCE_REPLY
    from smsgate_sim.simulator import Simulator

    state, user = prepare_state(options)

    nats = EmbeddedNats(store_dir=state / "nats")
    await nats.astart()
    sim_config = msgspec.structs.replace(
        base.sim,
        ports=options.ports,
        map_file=str(state / "devices.json"),
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
        ),
        callback=msgspec.structs.replace(base.callback, url=callback_url),
    )
    api = multiprocessing.get_context("spawn").Process(
        target=serve_worker,
        args=(msgspec.json.encode(config), os.getpid(), log_settings()),
        name="smsgate-api",
    )
    api.start()
    services = [
        asyncio.create_task(run_agent(config, stop), name="agent"),
        asyncio.create_task(_api_exit(api), name="api"),
        asyncio.create_task(run_callback(config, stop=stop), name="callback"),
    ]
    host, _, port = options.listen.rpartition(":")
    await _listening(host, int(port), api)
    numbers = {name: sim.modem(name).sim.msisdn for name in sim.devices}
    print(banner(f"http://{host}:{port}", user, sim.devices, numbers), flush=True)
    try:
        done, _ = await asyncio.wait(
            [*services, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in services and task.exception():
                log.error("%s stopped: %s", task.get_name(), task.exception())
        stop.set()
        if api.is_alive():
            api.terminate()
        await asyncio.gather(*services, return_exceptions=True)
    finally:
        if api.is_alive():
            api.kill()
        with contextlib.suppress(Exception):
            await receiver.stop()
        await sim.stop()
        await nats.astop()


async def _api_exit(api: multiprocessing.process.BaseProcess) -> None:
    """Wait for the API process to end; an end nobody asked for is an error."""
    await asyncio.to_thread(api.join)
    if api.exitcode not in (0, -2, -15):  # Ctrl-C reaches it too; -15: stopped by us
        raise RuntimeError(f"the API process exited with {api.exitcode}")


async def _listening(host: str, port: int, api: multiprocessing.process.BaseProcess) -> None:
    """Wait (bounded) until the API process accepts connections, so the banner is true."""
    for _ in range(600):
        if not api.is_alive():
            return  # _api_exit reports it
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
