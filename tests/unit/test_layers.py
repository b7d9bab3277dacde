"""The import graph: the core imports no service, no service imports another, and only the
command-line package sits above them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "smsgate_api": ROOT / "services/api/smsgate_api",
    "smsgate_agent": ROOT / "services/modem-agent/smsgate_agent",
    "smsgate_sim": ROOT / "services/modem-sim/smsgate_sim",
    "smsgate_callback": ROOT / "services/callback/smsgate_callback",
    "smsgate_history": ROOT / "services/history/smsgate_history",
}
CORE = ROOT / "shared/smsgate"
CLI = ROOT / "shared/smsgate_cli"


def imported_packages(package_dir: Path) -> dict[str, set[str]]:
    """Top-level package of every absolute import, per module file of `package_dir`."""
    found: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def offending(package_dir: Path, forbidden: set[str]) -> list[str]:
    return [
        f"{module} imports {', '.join(sorted(names & forbidden))}"
        for module, names in imported_packages(package_dir).items()
        if names & forbidden
    ]


def test_the_core_imports_no_service_and_not_the_cli() -> None:
    assert offending(CORE, set(SERVICES) | {"smsgate_cli"}) == []


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_service_imports_another_or_the_cli(service: str) -> None:
    others = (set(SERVICES) - {service}) | {"smsgate_cli"}
    assert offending(SERVICES[service], others) == []


def test_the_check_sees_imports() -> None:
    # The cli package does import the services; a check that finds nothing there is blind.
    seen = set().union(*imported_packages(CLI).values())
    assert set(SERVICES) <= seen
