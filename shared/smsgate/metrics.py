"""Prometheus metrics, written once for every service: counters, gauges and histograms in
plain dicts, their text exposition (format 0.0.4), and a small HTTP endpoint for the
services that have no HTTP server of their own (`GET /metrics`, `GET /healthz`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from smsgate.config import ConfigError, parse_listen

log = logging.getLogger("smsgate.metrics")

Labels = tuple[str, ...]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    """A monotonically increasing count per label set."""

    name: str
    help: str
    labelnames: Labels = ()
    values: dict[Labels, float] = field(default_factory=dict)
    kind: str = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labelnames, labels)} {_number(value)}"


@dataclass
class Gauge(Counter):
    """A value that goes up and down, or is read when scraped (`set`)."""

    kind: str = "gauge"

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value


@dataclass
class Histogram:
    """Observations counted into cumulative buckets, with their sum and count."""

    name: str
    help: str
    labelnames: Labels = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        return sum(self.counts.get(labels, ()))

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(self.sums[labels])}"
            yield f"{self.name}_count{_labels(self.labelnames, labels)} {running}"


Family = Counter | Histogram


def render(families: Iterable[Family]) -> str:
    """Families in the Prometheus text exposition format, one line each, newline-terminated."""
    return "".join(line + "\n" for family in families for line in family.lines())


# --- the endpoint ---------------------------------------------------------------------------

Source = Callable[[], str]
AsyncSource = Callable[[], Awaitable[str]]


class MetricsEndpoint:
    """`GET /metrics` (the sources' text, concatenated) and `GET /healthz` on one address."""

    def __init__(self, listen: str, key: str, sources: Sequence[Source]) -> None:
        self.host, self.port = parse_listen(listen, key)
        self.key = key
        self.sources = list(sources)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ConfigError(
                f"{self.key}: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                while (await reader.readline()).strip():  # the headers: not needed
                    pass
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, media = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path == "/metrics":
                text = "".join(source() for source in self.sources)
                status, body, media = "200 OK", text.encode(), CONTENT_TYPE
            elif path == "/healthz":
                status, body, media = "200 OK", b'{"status":"ok"}', "application/json"
            else:
                status, body, media = "404 Not Found", b"/metrics or /healthz\n", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {media}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass
        except Exception:
            log.exception("metrics endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def remote(url: str, timeout: float = 5.0) -> AsyncSource:
    """Another process's MetricsEndpoint (`url`, its /metrics) as a source of this one's.

    When it cannot be read, the text is a comment saying so: the rest of a scrape stands.
    """
    import httpx  # here: a service that only serves its metrics need not load it (~10 MiB)

    async def fetch() -> str:
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                answer = await client.get(url)
        except httpx.HTTPError as exc:
            log.warning("cannot read the metrics at %s: %s", url, exc or type(exc).__name__)
            return f"# {url}: not read ({exc or type(exc).__name__})\n"
        if answer.status_code != httpx.codes.OK:
            status = f"{answer.status_code} {answer.reason_phrase}"
            log.warning("the metrics at %s answered %r", url, status)
            return f"# {url}: answered {status!r}\n"
        return answer.text

    return fetch


@contextlib.asynccontextmanager
async def serving(listen: str, key: str, sources: Sequence[Source]) -> AsyncIterator[None]:
    """A MetricsEndpoint on `listen` for the body of an `async with`; nothing when empty."""
    if not listen:
        yield
        return
    async with MetricsEndpoint(listen, key, sources):
        yield
