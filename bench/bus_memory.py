"""What a running nats-server's memory is made of, read from its own endpoints.

nats-server started with `-m PORT` (monitoring) answers `/varz` (`mem`: its RSS) and
`/jsz` (what JetStream stores); with `--profile PORT` it serves Go's pprof, whose heap
profile in text form ends with the Go runtime's `MemStats`. Asked with `gc=1`, the
runtime collects first, so `HeapAlloc` is the live heap: what the server keeps. The
rest of its RSS is what the collector lets the heap grow to before the next collection
(`NextGC`, twice the live heap at the default GOGC=100), freed pages not yet handed back
to the kernel, stacks and the runtime's own books.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from dataclasses import dataclass

_STAT = re.compile(r"^# (\w+) = (\d+)$", re.M)
_RATE = re.compile(r"^heap profile: .* @ heap/(\d+)", re.M)
_RECORD = re.compile(r"^(\d+): (\d+) \[\d+: \d+\] @[^\n]*\n((?:#[^\n]*\n)+)", re.M)
_FRAME = re.compile(r"^#\t0x[0-9a-f]+\t(\S+)", re.M)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


@dataclass(frozen=True)
class BusMemory:
    """One reading of a nats-server: bytes, except `gcs`."""

    rss: int  # /varz mem
    live: int  # HeapAlloc just after a collection
    heap_in_use: int  # HeapInuse: spans holding objects (live or not yet swept)
    heap_idle: int  # HeapIdle - HeapReleased: free heap still resident
    released: int  # HeapReleased: given back to the kernel
    next_gc: int  # the heap size that triggers the next collection
    sys: int  # everything the runtime took from the kernel
    gcs: int
    store_bytes: int  # /jsz: bytes stored in all streams
    store_msgs: int
    top: tuple[tuple[str, int], ...]  # (function, live bytes) of the heap profile, largest first

    @property
    def slack(self) -> int:
        """RSS the live heap does not explain: the collector's headroom, idle pages, stacks."""
        return self.rss - self.live


def read(monitor: str, profile: str | None, *, collect: bool = True, top: int = 6) -> BusMemory:
    """Read `/varz` and `/jsz` at `monitor` and the heap profile at `profile` (base URLs)."""
    varz = json.loads(_get(f"{monitor}/varz"))
    jsz = json.loads(_get(f"{monitor}/jsz"))
    stats: dict[str, int] = {}
    owners: tuple[tuple[str, int], ...] = ()
    if profile is not None:
        text = _get(f"{profile}/debug/pprof/heap?debug=1&gc={int(collect)}").decode()
        stats = {name: int(value) for name, value in _STAT.findall(text)}
        owners = tuple(heap_owners(text)[:top])
    return BusMemory(
        rss=int(varz["mem"]),
        live=stats.get("HeapAlloc", 0),
        heap_in_use=stats.get("HeapInuse", 0),
        heap_idle=stats.get("HeapIdle", 0) - stats.get("HeapReleased", 0),
        released=stats.get("HeapReleased", 0),
        next_gc=stats.get("NextGC", 0),
        sys=stats.get("Sys", 0),
        gcs=stats.get("NumGC", 0),
        store_bytes=int(jsz.get("bytes", 0)),
        store_msgs=int(jsz.get("messages", 0)),
        top=owners,
    )


# What an allocation is for, told by a function on its stack (nats-server's source names).
KINDS = (
    ("getMsgBlockBuf", "block buffers"),  # a message block's write or read cache (sync.Pool)
    ("stree.", "subject index"),  # the per-subject tree: one leaf per KV key
    ("(*msgBlock).", "message blocks"),  # per-block indexes and state
    ("(*stream).storeMsgId", "duplicate window"),  # Nats-Msg-Id within the window
)


def owner(frames: list[str]) -> str:
    """What a stack allocated for (KINDS), else its first nats-server function."""
    for marker, kind in KINDS:
        if any(marker in frame for frame in frames):
            return kind
    first = next((f for f in frames if "nats-server" in f), frames[0] if frames else "?")
    return first.rsplit("/", 1)[-1].removeprefix("server.").split("+", 1)[0]


def heap_owners(profile: str) -> list[tuple[str, int]]:
    """Live bytes of a text heap profile by what they are for (`owner`).

    The text profile counts the sampled objects only (one in every `rate` bytes allocated,
    on average): each record is scaled by the odds that an object of its size is sampled.
    """
    found = _RATE.search(profile)
    rate = int(found.group(1)) / 2 if found else 512 * 1024  # the header says 2 * rate
    owners: dict[str, int] = {}
    for objects, in_use, stack in _RECORD.findall(profile):
        if int(objects) == 0:
            continue
        size = int(in_use) / int(objects)
        scaled = int(int(in_use) / (1 - math.exp(-size / rate)))
        name = owner(_FRAME.findall(stack))
        owners[name] = owners.get(name, 0) + scaled
    return sorted(owners.items(), key=lambda item: -item[1])


def describe(reading: BusMemory) -> str:
    """`rss 110.2 / live heap 31.0 / next GC 60.1 / idle 20.3 MiB`, for a table cell."""
    mib = 2**20
    return (
        f"{reading.rss / mib:.1f} / {reading.live / mib:.1f} / {reading.next_gc / mib:.1f} / "
        f"{reading.heap_idle / mib:.1f}"
    )
