"""`smsgate api|agent|callback|sim|history-store|dev|send|status|ports|tail|history`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import msgspec
from smsgate import logs
from smsgate.config import Config, ConfigError, load

Runner = Callable[[Config, asyncio.Event], Awaitable[None]]
CLIENT_COMMANDS = {"send", "status", "ports", "tail", "history"}


def _add_common(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        parser.add_argument("--config", "-c", metavar="FILE", help="TOML config file")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop (a dependency through uvicorn[standard]) when
    it is installed: the event loop is a large part of every message's cost."""
    try:
        import uvloop
    except ImportError:  # a platform without uvloop (Windows)
        asyncio.run(main)
        return
    uvloop.run(main)


async def _until_signalled(runner: Runner, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner(config, stop)


def _serve_api(config: Config, state_dir: str) -> None:
    """The API runs its own uvloop and signal handling (and worker processes)."""
    from smsgate_api.app import serve_api
    from smsgate_api.auth import ensure_users

    config, generated = ensure_users(config, state_dir)
    if generated is not None:
        print(
            f"No [[api.users]] configured: created user {generated.name!r} with password "
            f"{generated.password!r} and bearer token {generated.token!r} "
            f"(saved, hashed, in {generated.path}). Shown once.",
            flush=True,
        )
    serve_api(config)


async def _run_agent(config: Config, stop: asyncio.Event) -> None:
    from smsgate_agent.agent import run_agent

    await run_agent(config, stop, settle_heap=True)


async def _run_callback(config: Config, stop: asyncio.Event) -> None:
    from smsgate_callback.service import run_callback

    await run_callback(config, stop=stop)


async def _run_sim(config: Config, stop: asyncio.Event) -> None:
    from smsgate_sim.simulator import run_sim

    task = asyncio.create_task(run_sim(config.sim))
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _run_history_store(config: Config, stop: asyncio.Event) -> None:
    from smsgate_history.service import run_history_store

    await run_history_store(config, stop)


SERVICES: dict[str, tuple[Runner, str]] = {
    "agent": (_run_agent, "drive this host's modems, fed by JetStream"),
    "callback": (_run_callback, "push SMS events to HTTP receivers"),
    "sim": (_run_sim, "virtual modems on ptys or TCP, with a virtual radio network"),
    "history-store": (_run_history_store, "keep the SQL message history ([history] url)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgate", description="HTTP<->SMS gateway for SIM farms that span many hosts."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api = commands.add_parser("api", help="the HTTP API: gateway-compatible /sendsms and /api/v1")
    _add_common(api)
    api.add_argument(
        "--state-dir", default=".smsgate", help="where a generated default user is kept"
    )
    for name, (_, help_text) in SERVICES.items():
        service = commands.add_parser(name, help=help_text, description=help_text)
        _add_common(service)
        if name == "sim":
            actions = service.add_subparsers(dest="sim_command", metavar="ACTION")
            inject = actions.add_parser("inject", help="an SMS from an outside number to a port")
            inject.add_argument("--from", dest="sender", required=True, help="sender number")
            inject.add_argument("--text", required=True)
            where = inject.add_mutually_exclusive_group(required=True)
            where.add_argument("--to-port", help="port name, e.g. lte-1")
            where.add_argument("--to-number", help="a virtual SIM's number")
            inject.add_argument("--control", help="simulator control URL (default: smsgate dev's)")
            _add_common(inject, config=False)
        if name == "history-store":
            service.add_argument(
                "--rebuild",
                action="store_true",
                help="empty the history, then replay all the event stream still holds",
            )
    _add_client_commands(commands)

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


def _add_client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", help="API base URL (default $SMSGATE_API or http://127.0.0.1:8080)"
    )
    parser.add_argument("--user", help="NAME:PASSWORD (default $SMSGATE_USER or smsgate dev's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser("send", help="send an SMS to one or more numbers")
    send.add_argument("to", help="recipient number(s), comma-separated")
    send.add_argument("text", help="message text (any script, any length)")
    send.add_argument("--port", help="port name or number (default: any ready port)")
    send.add_argument("--wait", type=float, default=30.0, help="seconds to wait for results")
    send.add_argument("--id", dest="message_id", help="your message id")
    send.epilog = (
        "Exit status: 0 when no message failed, 1 when one failed, 3 when none failed but "
        "the outcome of one is unknown (it may have been sent: sending it again may "
        "deliver it twice)."
    )
    _add_client(send)

    status = commands.add_parser("status", help="a message's status")
    status.add_argument("id")
    _add_client(status)

    ports = commands.add_parser("ports", help="the farm's ports, or disable|enable|drain one")
    ports.add_argument("action", nargs="?", choices=["list", "disable", "enable", "drain"])
    ports.add_argument("name", nargs="?", help="port name for an action")
    ports.add_argument("--watch", action="store_true", help="refresh every 2 seconds")
    _add_client(ports)

    history = commands.add_parser("history", help="search or export the message history")
    history.add_argument("--direction", choices=["out", "in"])
    history.add_argument("--number", help="the other party (recipient or sender)")
    history.add_argument("--port", help="port names or numbers, comma-separated")
    history.add_argument("--sim", help="the SIM's IMSI")
    history.add_argument("--by", dest="by_user", metavar="USER", help="sent by this user")
    history.add_argument("--state", help="e.g. delivered,undelivered,expired")
    history.add_argument("--since", help="ISO 8601 time or Unix seconds")
    history.add_argument("--until", help="ISO 8601 time or Unix seconds")
    history.add_argument("--text", help="the text contains this")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--cursor", help="continue after a page (its `next`)")
    history.add_argument("--export", choices=["csv", "jsonl"], help="every match, to stdout")
    _add_client(history)

    tail = commands.add_parser("tail", help="follow the live event stream")
    tail.add_argument("--type", choices=["result", "report", "inbound", "port"])
    tail.add_argument("--port")
    tail.add_argument("--since", type=int, help="replay from after this stream sequence")
    _add_client(tail)


def _print_json(value: object) -> None:
    print(msgspec.json.format(msgspec.json.encode(value)).decode())


async def _client_command(args: argparse.Namespace) -> int:
    from smsgate_cli import client

    where = client.target(args.api, args.user)
    async with client.Client(where) as api:
        if args.command == "send":
            to = [n.strip() for n in args.to.split(",") if n.strip()]
            total = len(to)
            messages = await api.send(
                to, args.text, port=args.port, wait=args.wait, message_id=args.message_id
            )
            if args.json:
                _print_json(messages)
            else:
                for i, m in enumerate(messages, 1):
                    reason = f" ({m['reason']})" if m.get("reason") else ""
                    port = m.get("port") or "-"
                    print(f"[{i}/{total}] {m['to']}: {m['state']}{reason} id={m['id']} port={port}")
            return client.send_exit_code(m["state"] for m in messages)
        if args.command == "history":
            return await _history(api, args)
        if args.command == "status":
            _print_json(await api.status(args.id))
            return 0
        if args.command == "ports":
            if args.action in ("disable", "enable", "drain"):
                if not args.name:
                    raise client.ClientError(f"ports {args.action} needs a port name")
                answer = await api.port_action(args.name, args.action)
                if args.json:
                    _print_json(answer)
                else:
                    done = {"disable": "disabled", "enable": "enabled", "drain": "draining"}
                    print(f"{args.name}: {done[args.action]}")
                return 0
            while True:
                states = await api.ports()
                if args.json:
                    _print_json(states)
                else:
                    if args.watch:
                        print("\033[2J\033[H", end="")
                    print(client.port_table(states) if states else "no ports reported yet")
                if not args.watch:
                    return 0
                await asyncio.sleep(2)
        async for _sequence, data in api.events(args.type, args.port, args.since):
            print(data if args.json else client.event_line(data), flush=True)
    return 0


def history_query(args: argparse.Namespace) -> dict[str, str]:
    """The API query of `smsgate history`'s flags."""
    pairs = {
        "direction": args.direction,
        "number": args.number,
        "port": args.port,
        "sim": args.sim,
        "user": args.by_user,
        "state": args.state,
        "since": args.since,
        "until": args.until,
        "q": args.text,
        "cursor": args.cursor,
    }
    query = {k: str(v) for k, v in pairs.items() if v}
    if args.export:
        query["format"] = args.export
    else:
        query["limit"] = str(args.limit)
    return query


async def _history(api: Any, args: argparse.Namespace) -> int:
    from smsgate_cli import client

    query = history_query(args)
    if args.export:
        async for chunk in api.export(query):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return 0
    page = await api.history(query)
    if args.json:
        _print_json(page)
        return 0
    print(client.history_table(page["messages"]) if page["messages"] else "no messages")
    if page.get("next"):
        print(f"more: --cursor {page['next']}")
    return 0


async def _sim_inject(args: argparse.Namespace) -> int:
    from smsgate_cli import client

    answer = await client.sim_inject(
        client.sim_control(args.control),
        sender=args.sender,
        text=args.text,
        port=args.to_port,
        number=args.to_number,
    )
    _print_json(answer)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(getattr(args, "log_level", "warning"), getattr(args, "log_format", "text"))
    if args.command in CLIENT_COMMANDS or getattr(args, "sim_command", None) == "inject":
        from smsgate_cli.client import ClientError

        try:
            if args.command == "sim":
                return asyncio.run(_sim_inject(args))
            return asyncio.run(_client_command(args))
        except ClientError as exc:
            print(f"smsgate: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "api":
            _serve_api(config, args.state_dir)
        elif args.command == "history-store" and args.rebuild:
            from smsgate_history.service import run_history_store

            _serve(_until_signalled(lambda c, s: run_history_store(c, s, rebuild=True), config))
        elif args.command in SERVICES:
            _serve(_until_signalled(SERVICES[args.command][0], config))
        elif args.command == "dev":
            from smsgate_cli.dev import DevError, DevOptions, run_dev

            options = DevOptions(
                listen=args.listen,
                fresh=args.fresh,
                callback_url=args.callback_url,
                user=args.user,
                ports=args.ports,
                state_dir=args.state_dir,
            )
            try:
                _serve(_until_signalled(lambda c, s: run_dev(c, s, options), config))
            except DevError as exc:
                print(f"smsgate dev: {exc}", file=sys.stderr)
                return 1
    except ConfigError as exc:
        # Found while starting (a webhook URL, a listen address): still name the file.
        where = f"{args.config}: " if args.config else ""
        print(f"smsgate: {where}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
