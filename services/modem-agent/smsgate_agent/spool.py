"""What the agent knows and the bus does not have yet, kept on the agent's own disk.

A send result is written here before it is published (its modem has acted: the result
must outlive the process), and removed once the bus has it. Delivery reports and inbound
SMS land here only when they could not be published. After a partition, or a restart in
the middle of one, the agent publishes what is here before it takes new work.

One SQLite file per agent under `agent.state_dir`, in WAL mode: a committed entry
survives the process being killed (it is in the kernel's hands), without an fsync per
message. Created at the first entry, so an agent that never loses the bus writes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec


class Entry(msgspec.Struct, frozen=True):
    key: str  # the event id: one entry per event
    kind: str  # "result", "report", "inbound"
    body: bytes  # what the publisher needs to publish it again (kind-specific encoding)
    stored: float  # wall-clock seconds


class Spool:
    """Entries by key, oldest first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path.exists():
            self._open()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # Clustered by key (WITHOUT ROWID): an entry is one b-tree's page to write, not
            # a table's and its key index's. A file an earlier version made keeps its rowid
            # table: the statements below read and write both the same way.
            db.execute(
                "CREATE TABLE IF NOT EXISTS spool ("
                " key TEXT PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL,"
                " stored REAL NOT NULL) WITHOUT ROWID"
            )
            self._db = db
        return self._db

    def put(self, key: str, kind: str, body: bytes) -> None:
        self._open().execute(
            "INSERT OR REPLACE INTO spool (key, kind, body, stored) VALUES (?, ?, ?, ?)",
            (key, kind, body, time.time()),
        )

    def add(self, key: str, kind: str, body: bytes) -> bool:
        """Keep an entry unless one is kept under `key` already; whether it was added."""
        cursor = self._open().execute(
            "INSERT INTO spool (key, kind, body, stored) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (key, kind, body, time.time()),
        )
        return cursor.rowcount == 1

    def remove(self, key: str) -> None:
        if self._db is not None:
            self._db.execute("DELETE FROM spool WHERE key = ?", (key,))

    def get(self, key: str) -> Entry | None:
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT key, kind, body, stored FROM spool WHERE key = ?", (key,)
        ).fetchone()
        return Entry(*row) if row else None

    def entries(self) -> list[Entry]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT key, kind, body, stored FROM spool ORDER BY stored")
        return [Entry(*row) for row in rows]

    def __len__(self) -> int:
        if self._db is None:
            return 0
        (count,) = self._db.execute("SELECT count(*) FROM spool").fetchone()
        return int(count)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
