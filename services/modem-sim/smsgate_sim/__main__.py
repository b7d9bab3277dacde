"""`python -m smsgate_sim [--config FILE]`: the simulator without the `smsgate` CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from smsgate.config import ConfigError, SimConfig, load

from .simulator import run_sim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smsgate_sim", description=__doc__)
    parser.add_argument("--config", help="TOML file; its [sim] section is used")
    args = parser.parse_args(argv)
    try:
        config = load(args.config).sim
    except ConfigError as exc:
        print(f"smsgate sim: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_until_signalled(config))
    return 0


async def _until_signalled(config: SimConfig) -> None:
    # SIGTERM cancels like Ctrl-C does, so the ptys, links and map file are cleaned up.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run_sim(config)


if __name__ == "__main__":
    sys.exit(main())
