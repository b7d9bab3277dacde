"""DB-API connections off the event loop: SQLite (stdlib) or PostgreSQL (psycopg 3).

Each connection lives on its own thread, so a query never blocks the event loop and a
connection is only ever used by the thread that made it. `Database.run(work)` lends one
connection to `work(session)` inside a transaction that is committed when it returns
and rolled back when it raises. Statements are written once, with `?` placeholders; the
PostgreSQL dialect turns them into psycopg's `%s`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger("smsgate.history")

T = TypeVar("T")
Params = Sequence[Any]
Row = tuple[Any, ...]


class StoreError(Exception):
    """The history store cannot be used right now (unreachable, locked, misconfigured)."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the two SQL backends, and nothing else."""

    name: str
    greatest: str  # the two-argument maximum: MAX in SQLite, GREATEST in PostgreSQL

    def sql(self, statement: str) -> str:
        return statement if self.name == "sqlite" else statement.replace("?", "%s")


SQLITE = Dialect("sqlite", greatest="MAX")
POSTGRESQL = Dialect("postgresql", greatest="GREATEST")


def sqlite_path(url: str) -> Path:
    """`sqlite:///rel/path.db` is relative to the working directory, `sqlite:////abs` absolute."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2:
        raise StoreError(f"history url {url!r}: write sqlite:///relative/path or sqlite:////abs")
    return Path(rest[1:])


def dialect_of(url: str) -> Dialect:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLITE
    if scheme in ("postgresql", "postgres"):
        return POSTGRESQL
    raise StoreError(f"history url {url!r}: use sqlite:///path or postgresql://…")


def redacted(url: str) -> str:
    """The url with its password masked, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class Session:
    """One connection, lent to one unit of work on its own thread."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def execute(self, statement: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.dialect.sql(statement), tuple(params))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, statement: str, rows: Sequence[Params]) -> None:
        """One statement for many rows (psycopg pipelines them: one round trip, not n)."""
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self.dialect.sql(statement), [tuple(r) for r in rows])
        finally:
            cursor.close()

    def script(self, statements: Sequence[str]) -> None:
        for statement in statements:
            self.execute(statement)

    def all(self, statement: str, params: Params = ()) -> list[Row]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.dialect.sql(statement), tuple(params))
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def one(self, statement: str, params: Params = ()) -> Row | None:
        rows = self.all(statement, params)
        return rows[0] if rows else None


# The writer's page cache and checkpoint interval. Message ids are random, so a batch of
# events dirties pages all over the tables' indexes: with SQLite's default 2 MiB cache
# each one is read again from the OS, and with its default checkpoint every 1,000 WAL
# pages a commit in two or three stops to write back and sync the database file.
WRITER_CACHE_KIB = 64 * 1024
WRITER_CHECKPOINT_PAGES = 16_000  # 64 MiB of WAL at 4 KiB pages


def _connect_sqlite(url: str, *, writer: bool = False) -> Any:
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    raw.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint, safe in WAL
    if writer:
        raw.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        raw.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
    return raw


def _connect_postgresql(url: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "a postgresql:// history url needs psycopg: pip install 'psycopg[binary]'"
        ) from None
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {redacted(url)}: {exc}") from None


def _is_store_failure(exc: BaseException) -> bool:
    """A failure of the store itself (gone, locked), as opposed to a bug in a statement."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    module = type(exc).__module__
    return module.startswith("psycopg") and type(exc).__name__ in (
        "OperationalError",
        "InterfaceError",
        "AdminShutdown",
        "ConnectionTimeout",
    )


class _Slot:
    """A connection and the one thread that uses it; (re)connected on demand."""

    def __init__(self, url: str, dialect: Dialect, name: str, *, writer: bool = False) -> None:
        self.url = url
        self.dialect = dialect
        self.writer = writer
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.raw: Any = None

    def session(self) -> Session:
        if self.raw is None:
            if self.dialect is SQLITE:
                self.raw = _connect_sqlite(self.url, writer=self.writer)
            else:
                self.raw = _connect_postgresql(self.url)
        return Session(self.raw, self.dialect)

    def call(self, work: Callable[[Session], T]) -> T:
        session = self.session()
        try:
            result = work(session)
            self.raw.commit()
            return result
        except BaseException as exc:
            self.rollback()
            if _is_store_failure(exc):
                self.drop()
                raise StoreError(f"history store: {exc}") from exc
            raise

    def rollback(self) -> None:
        if self.raw is not None:
            try:
                self.raw.rollback()
            except Exception:
                self.drop()

    def drop(self) -> None:
        raw, self.raw = self.raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()


class Database:
    """A few connections to the history store, each on its own thread."""

    def __init__(
        self, url: str, *, size: int = 1, name: str = "history", writer: bool = False
    ) -> None:
        """`writer`: the history store's own connection (SQLite: a bigger page cache and
        rarer checkpoints, see WRITER_CACHE_KIB)."""
        self.url = url
        self.dialect = dialect_of(url)
        if self.dialect is SQLITE:
            sqlite_path(url)  # a malformed path fails here, at start-up
        self._slots = [_Slot(url, self.dialect, f"{name}-db", writer=writer) for _ in range(size)]
        self._free: asyncio.Queue[_Slot] | None = None
        self._export_names = 0

    def _queue(self) -> asyncio.Queue[_Slot]:
        if self._free is None:
            self._free = asyncio.Queue()
            for slot in self._slots:
                self._free.put_nowait(slot)
        return self._free

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` on a free connection's thread, as one transaction."""
        free = self._queue()
        slot = await free.get()
        future = asyncio.get_running_loop().run_in_executor(slot.executor, slot.call, work)
        # Work goes on when its caller is cancelled; the slot's one thread keeps the order.
        future.add_done_callback(lambda _: free.put_nowait(slot))
        return await future

    async def rows(
        self, statement: str, params: Params = (), *, batch: int = 1000
    ) -> AsyncGenerator[list[Row], None]:
        """The rows of one query in batches, read as they are consumed (flat memory).

        PostgreSQL reads through a server-side cursor; SQLite's cursor steps lazily.
        """
        free = self._queue()
        slot = await free.get()
        loop = asyncio.get_running_loop()
        self._export_names += 1
        cursor_name = f"smsgate_export_{self._export_names}"

        def open_cursor() -> Any:
            session = slot.session()
            if self.dialect is SQLITE:
                cursor = session.raw.cursor()
            else:
                cursor = session.raw.cursor(name=cursor_name)
                cursor.itersize = batch
            cursor.execute(self.dialect.sql(statement), tuple(params))
            return cursor

        def fetch(cursor: Any) -> list[Row]:
            return [tuple(row) for row in cursor.fetchmany(batch)]

        def close(cursor: Any) -> None:
            with contextlib.suppress(Exception):
                cursor.close()
            slot.rollback()

        cursor = None
        try:
            try:
                cursor = await loop.run_in_executor(slot.executor, open_cursor)
            except Exception as exc:
                await loop.run_in_executor(slot.executor, slot.rollback)
                if _is_store_failure(exc):
                    await loop.run_in_executor(slot.executor, slot.drop)
                    raise StoreError(f"history store: {exc}") from exc
                raise
            while True:
                chunk = await loop.run_in_executor(slot.executor, fetch, cursor)
                if not chunk:
                    return
                yield chunk
        finally:
            if cursor is not None:
                # Shielded: an export whose client went away must still give its slot back.
                with contextlib.suppress(Exception):
                    await asyncio.shield(loop.run_in_executor(slot.executor, close, cursor))
            free.put_nowait(slot)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(slot.executor, slot.drop)
            slot.executor.shutdown(wait=False)
