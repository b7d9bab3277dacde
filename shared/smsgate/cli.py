"""`smsgate api|agent|callback|sim|dev|send|status|ports|tail`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from smsgate import logs
from smsgate.config import Config, ConfigError, load

Runner = Callable[[Config, asyncio.Event], Awaitable[None]]


def _add_common(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        parser.add_argument("--config", "-c", metavar="FILE", help="TOML config file")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])


async def _until_signalled(runner: Runner, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner(config, stop)


async def _run_api(config: Config, stop: asyncio.Event) -> None:
    from smsgate_api.app import run_api

    task = asyncio.create_task(run_api(config))
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _run_agent(config: Config, stop: asyncio.Event) -> None:
    from smsgate_agent.agent import run_agent

    await run_agent(config, stop)


async def _run_callback(config: Config, stop: asyncio.Event) -> None:
    from smsgate_callback.service import run_callback

    await run_callback(config, stop=stop)


async def _run_sim(config: Config, stop: asyncio.Event) -> None:
    from smsgate_sim.simulator import run_sim

    task = asyncio.create_task(run_sim(config.sim))
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


SERVICES: dict[str, tuple[Runner, str]] = {
    "api": (_run_api, "the HTTP API: gateway-compatible /sendsms and /api/v1"),
    "agent": (_run_agent, "drive this host's modems, fed by JetStream"),
    "callback": (_run_callback, "push SMS events to HTTP receivers"),
    "sim": (_run_sim, "virtual modems on ptys or TCP, with a virtual radio network"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgate", description="HTTP<->SMS gateway for SIM farms that span many hosts."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SERVICES.items():
        _add_common(commands.add_parser(name, help=help_text, description=help_text))

    dev = commands.add_parser(
        "dev",
        help="everything on this machine: embedded NATS, 8 virtual modems, agent, API, callbacks",
    )
    _add_common(dev)
    dev.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    dev.add_argument("--fresh", action="store_true", help="start with an empty .smsgate/ store")
    dev.add_argument("--callback-url", help="send callbacks here instead of the console")
    dev.add_argument("--user", metavar="NAME:PASSWORD", help="API credentials to use")
    dev.add_argument("--ports", type=int, default=8, help="number of virtual modems")
    dev.add_argument("--state-dir", default=".smsgate", help="where NATS data and credentials live")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command in SERVICES:
            asyncio.run(_until_signalled(SERVICES[args.command][0], config))
        elif args.command == "dev":
            from smsgate.dev import DevOptions, run_dev

            options = DevOptions(
                listen=args.listen,
                fresh=args.fresh,
                callback_url=args.callback_url,
                user=args.user,
                ports=args.ports,
                state_dir=args.state_dir,
            )
            asyncio.run(_until_signalled(lambda c, s: run_dev(c, s, options), config))
    except ConfigError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
