"""Benchmark 1 (and 0, side by side): `/sendsms` against the bare reference and Kannel.

The gateway's `/sendsms` (auth, one recipient, timeout=0, JSON report, durable enqueue)
and `bench/reference_app.py` (bare Starlette, one JetStream-acked publish) run on the
same uvicorn settings (uvloop, httptools, no access log) against the same nats-server,
loaded by the same wrk (64 connections). Kannel's smsbox `/cgi-bin/sendsms` (file store,
fake SMSC) takes the same load. Each is measured `rounds` times, alternating, and the
median round counts: the machine is shared.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

import msgspec
from smsgate.embedded import EmbeddedNats
from smsgate_api.auth import hash_password

from bench import kannel
from bench.common import (
    PYTHON,
    ROOT,
    Load,
    Proc,
    command_line,
    free_port,
    note_load,
    processes,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
    wrk,
)

USER, PASSWORD = "bench", "benchpass"
QUERY = f"username={USER}&password={PASSWORD}&phonenumber=10086&message=hello&timeout=0&report=JSON"
SERVE_API = (
    "import sys, uvloop\n"
    "from smsgate.config import load\n"
    "from smsgate_api.app import run_api\n"
    "uvloop.run(run_api(load(sys.argv[1])))\n"
)


def api_config(directory: Path, nats_url: str, port: int, workers: int) -> Path:
    config = {
        "nats": {"url": nats_url},
        "api": {
            "listen": f"127.0.0.1:{port}",
            "workers": workers,
            "access_log": False,
            "users": [{"name": USER, "password": hash_password(PASSWORD)}],
        },
    }
    path = directory / f"api-{workers}.toml"
    path.write_bytes(msgspec.toml.encode(config))
    return path


def granian(target: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    argv = [
        str(Path(PYTHON).parent / "granian"),
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--working-dir",
        str(ROOT),
    ]
    return [*argv, "--factory", target] if factory else [*argv, target]


def start_api(
    directory: Path, nats_url: str, workers: int, server: str = "uvicorn"
) -> tuple[Proc, str]:
    port = free_port()
    path = api_config(directory, nats_url, port, workers)
    if server == "granian":
        argv = granian("bench.granian_app:app", port, workers, factory=True)
        env = {"SMSGATE_BENCH_CONFIG": str(path)}
        proc = spawn(f"api-{workers}-granian", argv, directory, env=env)
    else:
        proc = spawn(f"api-{workers}", [PYTHON, "-c", SERVE_API, str(path)], directory)
    wait_port(port)
    url = f"http://127.0.0.1:{port}/sendsms?{QUERY}"
    _ready(url, proc)
    return proc, url


def start_reference(
    directory: Path, nats_url: str, workers: int, server: str = "uvicorn"
) -> tuple[Proc, str]:
    port = free_port()
    if server == "granian":
        argv = granian("bench.reference_app:app", port, workers)
        proc = spawn(
            f"reference-{workers}-granian", argv, directory, env={"SMSGATE_NATS_URL": nats_url}
        )
        wait_port(port)
        url = f"http://127.0.0.1:{port}/sendsms?{QUERY}"
        _ready(url, proc)
        return proc, url
    argv = [
        PYTHON,
        "-m",
        "uvicorn",
        "--app-dir",
        str(ROOT / "bench"),
        "reference_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    proc = spawn(f"reference-{workers}", argv, directory, env={"SMSGATE_NATS_URL": nats_url})
    wait_port(port)
    url = f"http://127.0.0.1:{port}/sendsms?{QUERY}"
    _ready(url, proc)
    return proc, url


def _ready(url: str, proc: Proc, timeout: float = 30.0) -> None:
    """Wait until the endpoint answers 200 (the API answers 503 until NATS is attached)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc.alive()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except Exception as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready: {last}\n{proc.tail()}")


def measure(url: str, seconds: float, warmup: float) -> Load:
    if warmup > 0:
        wrk(url, seconds=warmup)
    return wrk(url, seconds=seconds)


def median_load(loads: list[Load]) -> Load:
    """The round with the median throughput (its latencies belong to it)."""
    ordered = sorted(loads, key=lambda load: load.rps)
    return ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-kannel", action="store_true")
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="HTTP server for both the API and the reference (granian: pip install granian)",
    )
    args = parser.parse_args(argv)
    load_before = note_load("api" if args.server == "uvicorn" else f"api-{args.server}")

    rows: list[list[object]] = []
    summary: dict[int, tuple[Load, Load]] = {}
    kannel_load: Load | None = None
    kannel_note = ""
    with workdir("api") as directory, processes() as procs:
        nats = EmbeddedNats(store_dir=directory / "nats")
        nats.start()
        try:
            for workers in args.workers:
                ref_proc, ref_url = start_reference(directory, nats.url, workers, args.server)
                procs.append(ref_proc)
                api_proc, api_url = start_api(directory, nats.url, workers, args.server)
                procs.append(api_proc)
                refs: list[Load] = []
                apis: list[Load] = []
                for round_ in range(args.rounds):
                    # Alternate who goes first, so a noisy neighbour's burst hits both.
                    order = [("ref", ref_url), ("api", api_url)]
                    if round_ % 2:
                        order.reverse()
                    for who, url in order:
                        load = measure(url, args.seconds, args.warmup)
                        (refs if who == "ref" else apis).append(load)
                        print(f"[{workers} worker(s)] round {round_ + 1} {who}: {load.row()}")
                ref_proc.stop()
                api_proc.stop()
                summary[workers] = (median_load(refs), median_load(apis))
            if not args.no_kannel:
                why = kannel.available()
                if why is None:
                    k = kannel.start(directory / "kannel")
                    try:
                        loads = []
                        for round_ in range(args.rounds):
                            load = measure(k.sendsms_url(), args.seconds, args.warmup)
                            loads.append(load)
                            print(f"[kannel] round {round_ + 1}: {load.row()}")
                        kannel_load = median_load(loads)
                    finally:
                        k.stop()
                else:
                    kannel_note = f"Kannel did not run: {why}."
        finally:
            nats.stop()

    for workers, (ref, api) in summary.items():
        ratio = api.rps / ref.rps
        rows.append([f"reference, {workers} worker(s), {args.server}", *_cells(ref), "", ""])
        targets = []
        if workers == 1:
            targets.append(f"≥ 0.8× reference: {ratio:.2f}× {verdict(ratio >= 0.8)}")
            targets.append(f"p99 ≤ 10 ms: {api.p99:.1f} ms {verdict(api.p99 <= 10)}")
        if kannel_load is not None:
            k_ratio = api.rps / kannel_load.rps
            p99_ratio = api.p99 / kannel_load.p99
            targets.append(
                f"≥ 1.0× Kannel: {k_ratio:.2f}× {verdict(k_ratio >= 1.0)}"
                + ("" if workers > 1 else " (target for the 2-core worker count)")
            )
            targets.append(
                f"p99 ≤ 2× Kannel's: {p99_ratio:.2f}× {verdict(p99_ratio <= 2.0)}"
                + ("" if workers > 1 else " (target for the 2-core worker count)")
            )
        rows.append(
            [
                f"**smsgate /sendsms, {workers} worker(s), {args.server}**",
                *_cells(api),
                f"{ratio:.2f}×",
                "<br>".join(targets),
            ]
        )
    if kannel_load is not None:
        rows.append(
            ["Kannel smsbox /cgi-bin/sendsms (file store, fake SMSC)", *_cells(kannel_load), "", ""]
        )

    body = "\n".join(
        [
            f"wrk, 2 threads, 64 connections, {args.seconds:g} s per round after a "
            f"{args.warmup:g} s warm-up, {args.rounds} rounds alternating reference and API; "
            "the median round is shown. Same nats-server (file store) for both; "
            + (
                "uvicorn with uvloop + httptools, no access log, for both."
                if args.server == "uvicorn"
                else "granian (asgi, uvloop, HTTP/1) for both."
            )
            + " The load generator shares the 2 cores.",
            "",
            f"Request: `GET /sendsms?{QUERY}` (scrypt-hashed password in the config).",
            "",
            table(
                ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "vs reference", "targets"], rows
            ),
            "",
            kannel_note,
            f"Load average at the start: {load_before}.",
        ]
    )
    write_section(
        "api" if args.server == "uvicorn" else f"api-{args.server}",
        f"1. API throughput ({args.server}): /sendsms vs reference (and 0. Kannel sendsms)",
        body,
        command=command_line(),
    )


def _cells(load: Load) -> list[object]:
    return [f"{load.rps:,.0f}", f"{load.p50:.2f}", f"{load.p99:.2f}", load.errors]


if __name__ == "__main__":
    main()
