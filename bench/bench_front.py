"""Benchmark 1 as a user meets it: `/sendsms` against Kannel's reference, interleaved.

One run takes turns: the Kannel reference (`shared/bench/kannel/run.sh`, run as it is:
smsbox + bearerbox with a file store + fakesmsc, restarted for every round), then
smsgate in the production shape (`smsgate api` from an operator's config, `workers = 2`
and every other key at its default, a nats-server with file storage, `smsgate agent`
draining into 8 virtual modems of `smsgate sim`), then `smsgate dev` (what
`scripts/run` starts), and again. Every one gets the same wrk load
(`-t1 -c64 -d10s --latency`) on the same request; the medians of the rounds and their
ratios to Kannel's median count, since other jobs share the machine. CPU per request
is each process's user + system time from /proc over the wrk run, divided by the
requests wrk completed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from smsgate.embedded import EmbeddedNats
from smsgate_api.auth import hash_password

from bench.common import (
    ROOT,
    Proc,
    command_line,
    cpu_seconds,
    free_port,
    load_average,
    median,
    note_load,
    parse_wrk,
    processes,
    smsgate_argv,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
    write_toml,
)

USER, PASSWORD = "bench", "benchpass"
QUERY = f"username={USER}&password={PASSWORD}&phonenumber=10086&message=hello"
KANNEL_SCRIPT = ("shared", "bench", "kannel", "run.sh")


def kannel_script() -> Path | None:
    """`run.sh` of the Kannel reference: $SMSGATE_KANNEL_REF, else beside the checkout."""
    if os.environ.get("SMSGATE_KANNEL_REF"):
        return Path(os.environ["SMSGATE_KANNEL_REF"])
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        candidate = base.joinpath(*KANNEL_SCRIPT)
        if candidate.exists():
            return candidate
    return None


@dataclass
class Round:
    """One wrk run against one contender, with CPU seconds per process over it."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds

    def cpu_per_request_us(self) -> dict[str, float]:
        return {name: seconds / self.requests * 1e6 for name, seconds in self.cpu.items()}


# --- Kannel, as its script runs it -----------------------------------------------------------


def run_kannel(script: Path, seconds: float) -> Round:
    done = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "DURATION": f"{seconds:g}s", "CONNS": "64", "THREADS": "1"},
        timeout=seconds + 180,
    )
    out = done.stdout
    last = re.search(r"kannel_sendsms_rps=([\d.]+) delivered_per_s=\S+ p99_ms=([\d.]+)", out)
    if done.returncode != 0 or last is None:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{out[-2000:]}{done.stderr}")
    requests = int(re.search(r"wrk: requests=(\d+) non2xx=(\d+)", out).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"wrk: requests=\d+ non2xx=(\d+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"latency_ms: p50=([\d.]+)", out).group(1))  # type: ignore[union-attr]
    window = re.search(r"over ([\d.]+)s", out)
    used = re.search(r"cpu_cores_used: bearerbox=([\d.]+) smsbox=([\d.]+) fakesmsc=([\d.]+)", out)
    cpu: dict[str, float] = {}
    if window and used:
        span = float(window.group(1))
        for name, cores in zip(("bearerbox", "smsbox", "fakesmsc"), used.groups(), strict=True):
            cpu[name] = float(cores) * span
    return Round(float(last.group(1)), p50, float(last.group(2)), requests, errors, cpu)


# --- smsgate's shapes ------------------------------------------------------------------------


def start_production(
    directory: Path,
    procs: list[Proc],
    stops: list[Callable[[], None]],
    workers: int,
    *,
    access_log: bool = True,
    source: Path | None = None,
) -> tuple[str, list[tuple[str, int]]]:
    """nats-server (file store), sim (8 modems), agent, `smsgate api` with `workers`;
    `source`: another checkout whose code they run (see `start_dev`)."""
    env = source_env(source)
    store = directory / "nats"
    nats = EmbeddedNats(store_dir=store)
    nats.start()
    stops.append(nats.stop)
    map_file = directory / "devices.json"
    sim_toml = write_toml(
        directory / "sim.toml",
        {"nats": {"url": nats.url}, "sim": {"ports": 8, "map_file": str(map_file)}},
    )
    sim = spawn("sim", smsgate_argv("sim", "-c", str(sim_toml)), directory, env=env)
    procs.append(sim)
    deadline = time.monotonic() + 30
    while not map_file.exists() or not map_file.read_text().strip():
        sim.alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the simulator wrote no {map_file}")
        time.sleep(0.1)
    devices: dict[str, str] = msgspec.json.decode(map_file.read_bytes())
    agent_toml = write_toml(
        directory / "agent.toml",
        {
            "nats": {"url": nats.url},
            "agent": {
                "name": "rack-1",
                "ports": [{"name": n, "device": d} for n, d in sorted(devices.items())],
                # virtual SIMs: no pacing, so the agent really drains the queue
                "policy": {"min_interval": 0.0, "jitter": 0.0},
            },
        },
    )
    agent = spawn("agent", smsgate_argv("agent", "-c", str(agent_toml)), directory, env=env)
    procs.append(agent)
    port = free_port()
    api_toml = write_toml(
        directory / "api.toml",
        {
            "nats": {"url": nats.url},
            "api": {
                "listen": f"127.0.0.1:{port}",
                "workers": workers,
                **({} if access_log else {"access_log": False}),
                "users": [{"name": USER, "password": hash_password(PASSWORD)}],
            },
        },
    )
    api = spawn("api", smsgate_argv("api", "-c", str(api_toml)), directory, env=env)
    procs.append(api)
    url = f"http://127.0.0.1:{port}/sendsms?{QUERY}"
    _ready(url, api)
    assert nats.pid is not None
    return url, [("nats-server", nats.pid), *((p.name, p.popen.pid) for p in (sim, agent, api))]


# Where a checkout keeps its packages (what its editable install would put on the path).
SOURCE_DIRS = (
    "shared",
    "services/api",
    "services/callback",
    "services/history",
    "services/modem-agent",
    "services/modem-sim",
)


def source_env(source: Path | None) -> dict[str, str] | None:
    """The environment that runs another checkout's code on this one's Python and packages."""
    if source is None:
        return None
    return {**os.environ, "PYTHONPATH": ":".join(str(source / d) for d in SOURCE_DIRS)}


def start_dev(
    directory: Path,
    procs: list[Proc],
    workers: int | None = None,
    *,
    source: Path | None = None,
) -> tuple[str, list[tuple[str, int]]]:
    """`smsgate dev` as `scripts/run` starts it; `workers`: its `api.workers`, from a config
    file (`smsgate dev -c FILE`), else its default; `source`: another checkout whose code
    it runs (on this one's Python and packages), for an A/B in one run."""
    port = free_port()
    config = []
    if workers is not None:
        write_toml(directory / "smsgate.toml", {"api": {"workers": workers}})
        config = ["-c", str(directory / "smsgate.toml")]
    argv = smsgate_argv(
        "dev",
        *config,
        "--listen",
        f"127.0.0.1:{port}",
        "--user",
        f"{USER}:{PASSWORD}",
        "--state-dir",
        str(directory / "state"),
        "--fresh",
    )
    dev = spawn("dev", argv, directory, env=source_env(source))
    procs.append(dev)
    url = f"http://127.0.0.1:{port}/sendsms?{QUERY}"
    _ready(url, dev, timeout=60)
    return url, [("dev", dev.popen.pid)]


def _ready(url: str, proc: Proc, timeout: float = 30.0) -> None:
    host_port = url.split("/")[2]
    wait_port(int(host_port.rsplit(":", 1)[1]), timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.alive()
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
            capture_output=True,
            text=True,
        )
        if done.stdout == "200":
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered 200:\n{proc.tail()}")


def process_tree(roots: list[tuple[str, int]]) -> dict[int, str]:
    """Every live process under `roots`, pid -> a readable name (root name / command)."""
    found: dict[int, str] = {}
    for root_name, root_pid in roots:
        stack = [(root_pid, root_name)]
        while stack:
            pid, name = stack.pop()
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            found[pid] = name if pid == root_pid else f"{name}/{comm}"
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend((int(child), name) for child in children)
    return found


def runsmsgate_argv(url: str, roots: list[tuple[str, int]], seconds: float) -> Round:
    tree = process_tree(roots)
    before = {pid: _cpu(pid) for pid in tree}
    argv = ["wrk", "-t1", "-c64", f"-d{seconds:g}s", "--latency", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = {pid: _cpu(pid) for pid in tree}
    load = parse_wrk(done.stdout)
    cpu: dict[str, float] = {}
    for pid, name in tree.items():
        cpu[name] = cpu.get(name, 0.0) + after[pid] - before[pid]
    return Round(load.rps, load.p50, load.p99, load.requests, load.errors, cpu)


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


# --- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, list[Round]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2],
        help="api.workers of the production shape (several: one shape each)",
    )
    parser.add_argument(
        "--no-access-log-too",
        action="store_true",
        help="also the production shape with access_log = false (what the log costs)",
    )
    parser.add_argument("--no-dev", action="store_true", help="leave `smsgate dev` out")
    parser.add_argument(
        "--dev-workers",
        type=int,
        nargs="+",
        default=[],
        help="api.workers of smsgate dev, from a config file (several: one each; "
        "default: dev's own default, no config file)",
    )
    parser.add_argument(
        "--dev-from",
        type=Path,
        metavar="CHECKOUT",
        help="also `smsgate dev` running another checkout's code (e.g. main's), for an A/B",
    )
    parser.add_argument(
        "--production-from",
        type=Path,
        metavar="CHECKOUT",
        help="also the production shape running another checkout's code, for an A/B",
    )
    parser.add_argument("--no-kannel", action="store_true", help="leave Kannel out (smoke runs)")
    parser.add_argument(
        "--no-write", action="store_true", help="print figures, leave RESULTS.md alone"
    )
    args = parser.parse_args(argv)
    script = None if args.no_kannel else kannel_script()
    if not args.no_kannel and script is None:
        raise SystemExit("no shared/bench/kannel/run.sh found; set SMSGATE_KANNEL_REF")
    load_before = note_load("front")

    results: dict[str, list[Round]] = {"kannel": []}
    with workdir("front") as directory, processes() as procs:
        stops: list[Callable[[], None]] = []
        contenders: list[tuple[str, str, list[tuple[str, int]]]] = []
        for workers in args.workers:
            name = f"production-{workers}"
            (directory / name).mkdir()
            url, roots = start_production(directory / name, procs, stops, workers)
            contenders.append((name, url, roots))
            results[name] = []
        if args.no_access_log_too:
            name = f"production-{args.workers[0]}-nolog"
            (directory / name).mkdir()
            url, roots = start_production(
                directory / name, procs, stops, args.workers[0], access_log=False
            )
            contenders.append((name, url, roots))
            results[name] = []
        if args.production_from is not None:
            name = f"production-{args.workers[0]}-from"
            (directory / name).mkdir()
            url, roots = start_production(
                directory / name, procs, stops, args.workers[0], source=args.production_from
            )
            contenders.append((name, url, roots))
            results[name] = []
        if not args.no_dev:
            for workers in args.dev_workers or [None]:
                name = "dev" if workers is None else f"dev-{workers}"
                (directory / name).mkdir()
                results[name] = []
                url, roots = start_dev(directory / name, procs, workers)
                contenders.append((name, url, roots))
        if args.dev_from is not None:
            (directory / "dev-from").mkdir()
            results["dev-from"] = []
            url, roots = start_dev(directory / "dev-from", procs, source=args.dev_from)
            contenders.append(("dev-from", url, roots))
        try:
            for round_ in range(args.rounds):
                if script is not None:
                    got = run_kannel(script, args.seconds)
                    results["kannel"].append(got)
                    print(f"round {round_ + 1} kannel: {_line(got)}", flush=True)
                for name, url, roots in contenders:
                    got = runsmsgate_argv(url, roots, args.seconds)
                    results[name].append(got)
                    print(f"round {round_ + 1} {name}: {_line(got)}", flush=True)
        finally:
            for proc in reversed(procs):
                proc.stop()
            for stop in stops:
                stop()
    body = report(results, args, load_before)
    print(body)
    if not args.no_write:
        write_section(
            "front", "1. /sendsms as deployed, against Kannel", body, command=command_line()
        )
    return results


def _line(got: Round) -> str:
    cpu = ", ".join(f"{n} {us:.0f}" for n, us in sorted(got.cpu_per_request_us().items()))
    return (
        f"{got.rps:,.0f} req/s, p50 {got.p50:.2f} ms, p99 {got.p99:.2f} ms, "
        f"errors {got.errors}; CPU µs/request: {cpu}"
    )


def report(results: dict[str, list[Round]], args: argparse.Namespace, load_before: str) -> str:
    kannel = results["kannel"]
    k_rps = median([r.rps for r in kannel]) if kannel else float("nan")
    k_p99 = median([r.p99 for r in kannel]) if kannel else float("nan")
    titles = {
        "kannel": "Kannel `run.sh` (smsbox, bearerbox file store, fakesmsc)",
        "dev": "smsgate dev",
    }
    targets: dict[str, tuple[float, float | None]] = {"dev": (0.8, None)}
    titles["dev-from"] = f"smsgate dev from {args.dev_from}"
    titles[f"production-{args.workers[0]}-from"] = (
        f"smsgate api, workers = {args.workers[0]}, from {args.production_from}"
    )
    for workers in args.dev_workers:
        titles[f"dev-{workers}"] = f"smsgate dev, api.workers = {workers}"
        targets[f"dev-{workers}"] = (0.8, None)
    for workers in args.workers:
        name = f"production-{workers}"
        titles[name] = f"smsgate api, workers = {workers}, other keys default (access log on)"
        if workers == 2:
            targets[name] = (1.0, 2.0)
    titles[f"production-{args.workers[0]}-nolog"] = (
        f"smsgate api, workers = {args.workers[0]}, access_log = false"
    )
    rows: list[list[object]] = []
    cpu_rows: list[list[object]] = []
    for name, rounds in results.items():
        if not rounds:
            continue
        rps = median([r.rps for r in rounds])
        p99 = median([r.p99 for r in rounds])
        per_round = " / ".join(f"{r.rps:,.0f}" for r in rounds)
        p99s = " / ".join(f"{r.p99:.1f}" for r in rounds)
        verdicts = ""
        if name in targets and kannel:
            rps_target, p99_target = targets[name]
            verdicts = f"rps ≥ {rps_target}×: {verdict(rps / k_rps >= rps_target)}"
            if p99_target is not None:
                verdicts += f"; p99 ≤ {p99_target}×: {verdict(p99 / k_p99 <= p99_target)}"
        rows.append(
            [
                titles[name],
                f"{rps:,.0f}",
                per_round,
                f"{median([r.p50 for r in rounds]):.2f}",
                f"{p99:.1f}",
                p99s,
                sum(r.errors for r in rounds),
                f"{rps / k_rps:.2f}×" if kannel else "",
                f"{p99 / k_p99:.2f}×" if kannel else "",
                verdicts,
            ]
        )
        names = sorted({n for r in rounds for n in r.cpu})
        per_process = {
            n: median([r.cpu_per_request_us().get(n, 0.0) for r in rounds]) for n in names
        }
        total = median([sum(r.cpu_per_request_us().values()) for r in rounds])
        shown = ", ".join(f"{n} {us:.0f}" for n, us in per_process.items() if us >= 0.5)
        cpu_rows.append([titles[name], f"{total:.0f}", shown])
    return "\n".join(
        [
            f"{args.rounds} rounds, each: Kannel's `run.sh` as it is, then the smsgate shapes, "
            f"each under `wrk -t1 -c64 -d{args.seconds:g}s --latency` on "
            f"`GET /sendsms?{QUERY}` (Kannel: `/cgi-bin/sendsms?…&to=10086&text=hello`). "
            "The production shape's processes are started by their command lines "
            "(`smsgate api|agent|sim -c FILE`), the agent with no per-SIM pacing so it drains "
            "the queue into the 8 modems all the while. Medians of the rounds; ratios to "
            "Kannel's median. wrk shares the 2 cores with the servers.",
            "",
            table(
                [
                    "what",
                    "req/s (median)",
                    "rounds",
                    "p50 ms",
                    "p99 ms (median)",
                    "rounds",
                    "errors",
                    "rps / Kannel",
                    "p99 / Kannel",
                    "targets",
                ],
                rows,
            ),
            "",
            "CPU per request (user + system from /proc over each wrk run, median of rounds):",
            "",
            table(["what", "µs/request, all processes", "per process, µs"], cpu_rows),
            "",
            f"Load average before {load_before}, after {load_average()} "
            "(about six other engineers' jobs share this machine).",
        ]
    )


if __name__ == "__main__":
    main()
