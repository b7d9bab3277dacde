"""`python -m smsgate_sim [--config FILE]`: the simulator without the `smsgate` CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from smsgate.config import ConfigError, load

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
        asyncio.run(run_sim(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
