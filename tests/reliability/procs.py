"""The services as real processes: `python -m smsgate_cli <service> --config FILE`.

Each process gets its config written as TOML (as an operator writes it) and its own log
file. `Processes` starts them and makes sure none outlives the test: SIGTERM first, so a
graceful stop is tried, then SIGKILL for whatever lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from smsgate.config import ApiConfig, ApiUser, Config, NatsConfig
from smsgate.embedded import free_port

from tests.integration.farm import _without_none
from tests.reliability.ledger import until_async

STOP_TIMEOUT = 20.0


def write_config(config: Config, path: Path) -> Path:
    """`config` as the TOML file a person would write (TOML has no null: unset keys left out)."""
    path.write_bytes(msgspec.toml.encode(_without_none(msgspec.to_builtins(config))))
    return path


@dataclass
class Service:
    """One `smsgate <kind>` process with its config file and log."""

    kind: str
    name: str
    config: Config
    workdir: Path
    args: Sequence[str] = ()
    launcher: Sequence[str] = ()  # prefixed to the command, e.g. `ip netns exec NS`
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        """The API's base URL (api processes only)."""
        host, _, port = self.config.api.listen.rpartition(":")
        return f"http://{host}:{port}"

    def start(self) -> None:
        write_config(self.config, self.config_path)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.launcher,
                    sys.executable,
                    "-m",
                    "smsgate_cli",
                    self.kind,
                    "--config",
                    str(self.config_path),
                    *self.args,
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash nothing can clean up after."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def terminate(self, limit: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait (without blocking the loop: the simulator may live on it)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop within {limit}s") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Processes:
    """Every service a test started, so that all of them are stopped at the end."""

    workdir: Path
    services: list[Service] = field(default_factory=list)

    def start(
        self, kind: str, name: str, config: Config, *args: str, launcher: Sequence[str] = ()
    ) -> Service:
        service = Service(kind, name, config, self.workdir, args, launcher)
        self.services.append(service)
        service.start()
        return service

    def logs(self) -> dict[str, str]:
        return {s.name: s.log() for s in self.services}

    async def stop_all(self) -> None:
        running = [s for s in self.services if s.alive]
        for service in running:
            assert service.process is not None
            service.process.send_signal(signal.SIGTERM)
        for service in running:
            assert service.process is not None
            try:
                await asyncio.to_thread(service.process.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                service.kill()


@contextlib.asynccontextmanager
async def processes(workdir: Path) -> AsyncIterator[Processes]:
    """Processes for the body of an `async with`; none survives it."""
    procs = Processes(workdir)
    try:
        yield procs
    finally:
        await procs.stop_all()


def api_config(nats: NatsConfig, users: Sequence[ApiUser], **api: object) -> Config:
    """An API on a free loopback port."""
    settings: dict[str, object] = {
        "listen": f"127.0.0.1:{free_port()}",
        "users": list(users),
        **api,
    }
    return Config(nats=nats, api=msgspec.convert(settings, ApiConfig, from_attributes=True))


async def wait_ready(api: Service, limit: float = 30.0) -> None:
    """Until the API answers /readyz with 200 (connected to NATS, streams present)."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            async with asyncio.timeout(limit):
                while True:
                    if not api.alive:
                        raise AssertionError(f"{api.name} exited:\n{api.log()[-3000:]}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{api.url}/readyz")).status_code == 200:
                            return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{api.name} not ready:\n{api.log()[-3000:]}") from None


async def wait_ports_known(
    api: Service,
    ports: Iterable[str],
    *,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    limit: float = 30.0,
) -> None:
    """Until the API's port table lists `ports`: a job pinned to a port it has not heard
    of yet is refused as `unknown port`, rightly."""
    wanted = set(ports)
    async with httpx.AsyncClient(base_url=api.url, timeout=5.0, auth=auth) as client:

        async def known() -> bool:
            answer = await client.get("/api/v1/ports", headers=headers)
            return wanted <= {p["port"] for p in answer.json()["ports"]}

        await until_async(known, f"the API knows {sorted(wanted)}", limit)
