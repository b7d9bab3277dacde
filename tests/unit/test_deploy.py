"""compose.yaml, the systemd units and the example configs stay true to the product."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from smsgate.config import load
from smsgate_cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> set[str]:
    parser = cli.build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def test_compose_parses_and_runs_real_subcommands() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "smsgate"}
    assert {"api", "callback", "history", "modem-agent", "sim", "sim-agent"} <= set(ours)
    for name, service in ours.items():
        command = service["command"]
        assert command[0] in subcommands(), (name, command)
        cli.build_parser().parse_args(command)  # every flag is one the CLI takes
    assert services["api"]["deploy"]["replicas"] == 2
    assert {s["image"].split(":")[0] for n, s in services.items() if n.startswith("nats")} == {
        "nats"
    }


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "config").glob("*.toml")), ids=str)
def test_mounted_configs_decode(path: Path) -> None:
    config = load(path, env={})
    if config.agent.ports:
        assert config.agent.name


def test_systemd_units_run_real_subcommands() -> None:
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert units
    for unit in units:
        [exec_start] = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        argv = exec_start.split()[1:]
        assert argv[0] in subcommands()
        cli.build_parser().parse_args(argv)
