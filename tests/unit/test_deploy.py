"""compose.yaml, the systemd units and the example configs stay true to the product."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from smsgate.config import Config, load
from smsgate_cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> set[str]:
    parser = cli.build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def compose_config(*profiles: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as a real compose implementation resolves it (podman-compose's `config`;
    `--dry-run` needs no container engine): anchors merged, variables and profiles applied."""
    exe = Path(sys.executable).parent / "podman-compose"
    args = [str(exe), "--dry-run", "-f", str(ROOT / "compose.yaml")]
    for profile in profiles:
        args += ["--profile", profile]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSGATE_")}
    done = subprocess.run(
        [*args, "config"], capture_output=True, text=True, env={**clean, **(env or {})}, check=False
    )
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


SMSGATE_SERVICES = {"api", "callback", "history", "modem-agent", "sim", "sim-agent"}
PLAIN = {"nats", "postgres", "api", "history", "callback"}


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        ((), PLAIN),
        (("hardware",), {*PLAIN, "modem-agent"}),
        (("sim",), {*PLAIN, "sim", "sim-agent"}),
        (("cluster",), {*PLAIN, "nats-1", "nats-2", "nats-3"}),
    ],
)
def test_each_profile_starts_what_the_header_says(
    profiles: tuple[str, ...], expected: set[str]
) -> None:
    assert set(compose_config(*profiles)["services"]) == expected
    header = [ln for ln in (ROOT / "compose.yaml").read_text().splitlines() if ln.startswith("#")]
    [plain] = [ln for ln in header if ln.startswith("# docker compose up ")]
    assert "agent" not in plain
    for profile in profiles:
        assert any(f"--profile {profile} up" in ln for ln in header), profile


def test_every_smsgate_service_is_built_and_runs_a_real_command_and_config() -> None:
    services = compose_config("hardware", "sim")["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "smsgate"}
    assert set(ours) == SMSGATE_SERVICES
    for name, service in ours.items():
        assert Path(service["build"]["context"]).resolve() == ROOT, name
        command = service["command"]
        assert command[0] in subcommands(), (name, command)
        cli.build_parser().parse_args(command)  # every flag is one the CLI takes
        [mount] = service["volumes"]
        source, target, _ = mount.split(":")
        path = ROOT / source / Path(command[command.index("--config") + 1]).relative_to(target)
        assert path.is_file(), (name, path)
        load(path, env={k: str(v) for k, v in service.get("environment", {}).items()})
    assert services["api"]["deploy"]["replicas"] == 2


def test_every_service_has_a_healthcheck_and_waits_for_what_it_needs() -> None:
    services = compose_config("hardware", "sim", "cluster")["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency]


def test_healthchecks_ask_the_address_each_service_listens_on() -> None:
    services = compose_config("hardware", "sim")["services"]

    def config_of(name: str) -> Config:
        command = services[name]["command"]
        return load(ROOT / "deploy" / "config" / Path(command[-1]).name, env={})

    listens = {
        "api": config_of("api").api.listen,
        "callback": config_of("callback").callback.metrics_listen,
        "history": config_of("history").history.metrics_listen,
        "modem-agent": config_of("modem-agent").agent.metrics_listen,
        "sim-agent": config_of("sim-agent").agent.metrics_listen,
        "sim": config_of("sim").sim.control,
    }
    for name, listen in listens.items():
        port = listen.rpartition(":")[2]
        assert port, (name, listen)
        assert f"127.0.0.1:{port}/" in " ".join(services[name]["healthcheck"]["test"]), name


def test_nats_is_not_published_without_authentication() -> None:
    services = compose_config("hardware", "sim", "cluster")["services"]
    for name, service in services.items():
        if name.startswith("nats"):
            assert not service.get("ports"), name


def test_cluster_profile_takes_the_nats_url_from_the_environment() -> None:
    url = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
    env = {"SMSGATE_NATS_URL": url, "SMSGATE_NATS_REPLICAS": "3"}
    services = compose_config("cluster", "sim", env=env)["services"]
    for name in ("api", "callback", "sim-agent"):
        environment = {k: str(v) for k, v in services[name]["environment"].items()}
        command = services[name]["command"]
        config = load(ROOT / "deploy" / "config" / Path(command[-1]).name, env=environment)
        assert (config.nats.servers, config.nats.replicas) == (url.split(","), 3), name
    plain = compose_config()["services"]["api"]["environment"]
    assert plain["SMSGATE_NATS_URL"] == "nats://nats:4222"


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
