"""What this process's SQLite and C heap hold, as the libraries count it themselves.

SQLite counts its own heap (`sqlite3_status64`): all of it, and the share of its page
caches, each cached page with SQLite's header for it (about 7 % over the page's bytes).
glibc counts its arenas (`mallinfo2`): the bytes in use and the free bytes inside them,
which the process still holds. A page cache that grows one page at a time leaves free
holes between its pages where shorter-lived allocations were (about a fifth of what the
cache grew by, bench/RESULTS.md "Issues 19 and 20"); they stop growing with the cache.

Each reading is None where it cannot be had: an SQLite linked into Python without its
symbols exported, a C library other than glibc 2.33 or later.
"""

from __future__ import annotations

import ctypes
import functools
import sqlite3
from dataclasses import dataclass
from typing import Any

_MEMORY_USED = 0  # SQLITE_STATUS_MEMORY_USED
_PAGECACHE_OVERFLOW = 2  # SQLITE_STATUS_PAGECACHE_OVERFLOW: every cached page without
# SQLITE_CONFIG_PAGECACHE (Python's sqlite3 configures none)


@dataclass(frozen=True)
class SqliteMemory:
    """Bytes of SQLite's heap in this process: all of it, and its page caches' share (but
    the first pages of each cache, which SQLite allocates in one piece and counts apart)."""

    used: int
    page_cache: int


@dataclass(frozen=True)
class Heap:
    """Bytes of the C heap's arenas (glibc): allocated, and free but still held."""

    in_use: int
    free: int


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _sqlite_status() -> Any:
    """`sqlite3_status64` of the SQLite that Python's sqlite3 module runs on, or None."""
    import _sqlite3

    try:
        library = ctypes.CDLL(_sqlite3.__file__)  # its symbols, then its libraries'
        status = library.sqlite3_status64
        version = library.sqlite3_libversion
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    if version() != sqlite3.sqlite_version.encode():
        return None  # another copy of SQLite than the one the module uses
    status.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int,
    ]
    status.restype = ctypes.c_int
    return status


def _status(function: Any, operation: int) -> int:
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    function(operation, ctypes.byref(current), ctypes.byref(highest), 0)
    return current.value


def sqlite_memory() -> SqliteMemory | None:
    """SQLite's heap in this process, every connection's together."""
    status = _sqlite_status()
    if status is None:
        return None
    return SqliteMemory(_status(status, _MEMORY_USED), _status(status, _PAGECACHE_OVERFLOW))


@functools.cache
def _mallinfo2() -> Any:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _Mallinfo2
    return function


def heap() -> Heap | None:
    """The C heap of this process, every arena's together (glibc only)."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return Heap(in_use=info.uordblks + info.hblkhd, free=info.fordblks)
