"""The tables of the message history, the same on SQLite and PostgreSQL.

Times are integers: microseconds since the Unix epoch, UTC. They sort, compare and index
alike on both backends, and a cursor carries them exactly.

- `smsgate_messages`: one row per message, sent (`out`) or received (`in`), holding its
  latest state. Every event folds into it in any order (see smsgate_history.ingest).
- `smsgate_message_events`: every event applied, keyed by its message's id and its own
  (so applying one twice changes nothing); a message's timeline is its rows here.
- `smsgate_message_parts`: each sent part with its TP-MR.
"""

from __future__ import annotations

from smsgate.history.database import Session

SCHEMA_VERSION = 2  # 2: events keyed by (message_id, event_id), see _events_table
_SCHEMA_LOCK = 0x736D73676174  # "smsgat": the advisory lock key of schema changes

MESSAGES = "smsgate_messages"
EVENTS = "smsgate_message_events"
PARTS = "smsgate_message_parts"
META = "smsgate_history_meta"
MESSAGES_FILLFACTOR = 70  # PostgreSQL: percent of a page filled by inserts

TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {MESSAGES} (
        id TEXT PRIMARY KEY,
        direction TEXT NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        number TEXT NOT NULL DEFAULT '',
        number_key TEXT NOT NULL DEFAULT '',
        text TEXT,
        user_name TEXT NOT NULL DEFAULT '',
        caller_id TEXT,
        port TEXT,
        port_number INTEGER,
        sim TEXT,
        agent TEXT,
        state TEXT NOT NULL,
        state_rank INTEGER NOT NULL,
        reason TEXT,
        status_report INTEGER,
        parts INTEGER,
        report TEXT,
        report_reason TEXT,
        report_code INTEGER,
        report_time BIGINT,
        smsc_time BIGINT,
        smsc TEXT,
        complete INTEGER
    )""",
    f"""CREATE TABLE IF NOT EXISTS {PARTS} (
        message_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        reference INTEGER,
        error TEXT,
        at BIGINT NOT NULL,
        PRIMARY KEY (message_id, sequence)
    )""",
    f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Every listing is newest first, so each index ends in (created, id): a page is a range scan.
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS smsgate_messages_created ON {MESSAGES} (created, id)",
    f"CREATE INDEX IF NOT EXISTS smsgate_messages_number ON {MESSAGES} (number_key, created, id)",
    f"CREATE INDEX IF NOT EXISTS smsgate_messages_user ON {MESSAGES} (user_name, created, id)",
    f"CREATE INDEX IF NOT EXISTS smsgate_messages_port ON {MESSAGES} (port, created, id)",
    f"CREATE INDEX IF NOT EXISTS smsgate_messages_sim ON {MESSAGES} (sim, created, id)",
    f"CREATE INDEX IF NOT EXISTS smsgate_message_events_at ON {EVENTS} (at)",
)


def _events_table(name: str, dialect_name: str) -> str:
    """A message's events side by side, under its id: message ids are random, so a key of
    the event id alone (and an index by message beside it) put each event in two random
    places of two B-trees, each page of them written again at every commit. SQLite keeps
    the rows in the key's own B-tree (WITHOUT ROWID)."""
    without = " WITHOUT ROWID" if dialect_name == "sqlite" else ""
    return f"""CREATE TABLE IF NOT EXISTS {name} (
        message_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        step TEXT NOT NULL,
        port TEXT,
        detail TEXT,
        PRIMARY KEY (message_id, event_id)
    ){without}"""


def create(session: Session) -> None:
    """Create whatever is missing, and bring an older schema up to date; safe to run from
    every process at every start."""
    if session.dialect.name == "postgresql":
        # Concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalog
        # (API replicas and the store starting together): one at a time.
        session.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
        # `CREATE INDEX IF NOT EXISTS` locks its table before it looks whether the index
        # exists: run against the store's writes, it waited for them and could deadlock
        # with them. A schema that is there and current needs nothing.
        if _current(session):
            return
    session.script(TABLES)
    found = session.one(f"SELECT value FROM {META} WHERE key = 'schema'")
    if found is not None and int(found[0]) > SCHEMA_VERSION:
        raise RuntimeError(
            f"the history store has schema {found[0]}, newer than this smsgate ({SCHEMA_VERSION})"
        )
    if found is not None and int(found[0]) < 2:
        _events_by_message(session)
    session.execute(_events_table(EVENTS, session.dialect.name))
    session.script(INDEXES)
    if session.dialect.name == "postgresql":
        _leave_room(session)
    if found is None:
        session.execute(
            f"INSERT INTO {META} (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO NOTHING",
            (str(SCHEMA_VERSION),),
        )
    elif int(found[0]) < SCHEMA_VERSION:
        session.execute(f"UPDATE {META} SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


def _events_by_message(session: Session) -> None:
    """Schema 1 to 2: the events table keyed by (message_id, event_id), rows kept."""
    moved = f"{EVENTS}_2"
    session.execute(_events_table(moved, session.dialect.name))
    session.execute(
        f"INSERT INTO {moved} (message_id, event_id, at, step, port, detail) "
        f"SELECT message_id, event_id, at, step, port, detail FROM {EVENTS}"
    )
    session.execute(f"DROP TABLE {EVENTS}")  # with its indexes
    session.execute(f"ALTER TABLE {moved} RENAME TO {EVENTS}")


def _leave_room(session: Session) -> None:
    """PostgreSQL: room left in each page of the messages, so that an update changing no
    indexed column (a result, a report) is a heap-only tuple, with no new entry in any of
    the six indexes. Pages written from then on get it."""
    wanted = f"fillfactor={MESSAGES_FILLFACTOR}"
    found = session.one("SELECT reloptions FROM pg_class WHERE relname = ?", (MESSAGES,))
    if found is None or wanted not in (found[0] or []):
        session.execute(f"ALTER TABLE {MESSAGES} SET ({wanted})")


def _current(session: Session) -> bool:
    """The schema of this version is there (read without locking any table but META's)."""
    exists = session.one("SELECT to_regclass(?) IS NOT NULL", (META,))
    if exists is None or not exists[0]:
        return False
    found = session.one(f"SELECT value FROM {META} WHERE key = 'schema'")
    return found is not None and int(found[0]) == SCHEMA_VERSION


def wipe(session: Session) -> None:
    """Delete every row (for a rebuild from the stream)."""
    for table in (EVENTS, PARTS, MESSAGES):
        session.execute(f"DELETE FROM {table}")
