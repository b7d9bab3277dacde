"""`smsgate dev` keeps a message history with nothing installed: SQLite in its state dir."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from smsgate.config import Config
from smsgate.embedded import free_port
from smsgate_cli.dev import Credentials, DevOptions, run_dev


async def test_dev_keeps_the_history_in_its_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    options = DevOptions(listen=listen, ports=2, state_dir=str(tmp_path), user="dev:devpass")
    stop = asyncio.Event()
    dev = asyncio.create_task(run_dev(Config(), stop, options))
    user = Credentials("dev", "devpass")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{listen}", auth=(user.name, user.password), timeout=60
        ) as client:
            for _ in range(600):
                if dev.done():
                    dev.result()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            sent = await client.post(
                "/api/v1/messages", json={"to": ["10086"], "text": "ye", "wait": 30}
            )
            [message] = sent.json()["messages"]
            assert message["state"] == "sent"
            # Either side: the message to 10086 and the carrier's reply from it.
            for _ in range(300):
                found = (await client.get("/api/v1/messages?number=10086")).json()["messages"]
                if {(m["direction"], m["state"]) for m in found} == {
                    ("out", "delivered"),
                    ("in", "received"),
                }:
                    break
                await asyncio.sleep(0.1)
            sent_one = [m for m in found if m["direction"] == "out"]
            assert [(m["id"], m["text"], m["state"]) for m in sent_one] == [
                (message["id"], "ye", "delivered")
            ]
            inbox = (await client.get("/api/v1/inbox")).json()["messages"]
            assert [m["number"] for m in inbox] == ["10086"]
    finally:
        stop.set()
        await asyncio.wait_for(dev, 60)
        capsys.readouterr()
    assert (tmp_path / "history.db").is_file()
