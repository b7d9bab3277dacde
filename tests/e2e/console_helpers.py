"""What the browser tests of the web console need: Debian's chromium driven by Playwright,
a farm of real pieces (nats-server, simulator, agent, API on uvicorn), and screenshots.

Screenshots are written only when `SMSGATE_SCREENSHOTS` names a directory
(`SMSGATE_SCREENSHOTS=docs scripts/test tests/e2e/test_console.py` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright
from smsgate import bus
from smsgate.config import (
    AgentConfig,
    AgentPort,
    ApiUser,
    Config,
    HistoryConfig,
    NatsConfig,
    SendPolicy,
    SimConfig,
)
from smsgate.embedded import free_port
from smsgate_agent.agent import run_agent
from smsgate_api.app import create_app
from smsgate_history.service import run_history_store
from smsgate_sim.simulator import Simulator

USER, PASSWORD = "operator", "console-pw"
UNDELIVERABLE = "+15557650404"  # the virtual network reports this number's SMS as failed
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's chromium (scripts/test installs it when missing)."""
    path = os.environ.get("SMSGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("no chromium for the browser tests: run scripts/ensure-chromium (root)")
    return path


@contextlib.asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    """A page and the script errors it raised (a console with a broken script fails its test)."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.errors, self.errors


@contextlib.asynccontextmanager
async def open_page(browser: Browser, **context: object) -> AsyncIterator[Watched]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, **context)  # type: ignore[arg-type]
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        # The console asks who is logged in before anyone is: that 401 is expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            watched.errors.append(message.text)

    def on_error(error: Error) -> None:
        watched.errors.append(f"{error.name}: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        yield watched
    finally:
        await ctx.close()
    watched.check()


async def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("SMSGATE_SCREENSHOTS")
    if folder:
        # Playwright makes the folder.
        await page.screenshot(path=os.path.join(folder, f"{name}.png"))


# --- the farm ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_api(config: Config) -> AsyncIterator[str]:
    """The API app on uvicorn on a free loopback port, once it answers /healthz."""
    port = free_port()
    uv = uvicorn.Config(
        create_app(config),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,  # SSE streams stay open until then
    )
    server = uvicorn.Server(uv)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.should_exit = True
        await task


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(20):
        while (await client.get(f"{url}/readyz")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def api_config(nats: NatsConfig) -> Config:
    history = HistoryConfig(url=f"sqlite:///{tempfile.mkdtemp(prefix='smsgate-console-')}/h.db")
    return Config(
        nats=nats,
        api=msgspec.structs.replace(
            Config().api, users=[ApiUser(name=USER, password=PASSWORD, ports=["*"])]
        ),
        history=history,
    )


async def fresh_streams(nats: NatsConfig) -> None:
    """Delete every stream and bucket, then provision them again (as the nats_bus fixture)."""
    nc = await bus.connect(nats, name="console-e2e")
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name or "")
        await bus.provision(js, nats)
    finally:
        await nc.close()


@dataclass
class Farm:
    url: str
    sim: Simulator


@contextlib.asynccontextmanager
async def running_farm(nats: NatsConfig, ports: int = 8) -> AsyncIterator[Farm]:
    """The simulator's virtual modems, one agent on them, and the API in front."""
    await fresh_streams(nats)
    sim = Simulator(
        SimConfig(
            ports=ports,
            part_time=(0.05, 0.15),
            report_delay=(0.4, 0.6),
            delivery_delay=(0.05, 0.1),
            ussd_delay=0.1,
            control="",
            report_status={UNDELIVERABLE: 0x41},
        )
    )
    await sim.start()
    config = msgspec.structs.replace(
        api_config(nats),
        agent=AgentConfig(
            name="host-a",
            ports=[AgentPort(name=n, device=d) for n, d in sim.devices.items()],
            policy=SendPolicy(min_interval=0, jitter=0, daily_cap=500),
            heartbeat=0.5,
        ),
    )
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(config, stop))
    history = asyncio.create_task(run_history_store(config, stop))
    try:
        async with serve_api(config) as url:
            await wait_ready(url)
            yield Farm(url, sim)
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await agent
            await history
        await sim.stop()
