"""The tables of the message history, the same on SQLite and PostgreSQL.

Times are integers: microseconds since the Unix epoch, UTC. They sort, compare and index
alike on both backends, and a cursor carries them exactly.

- `smsgate_messages`: one row per message, sent (`out`) or received (`in`), holding its
  latest state. Every event folds into it in any order (see smsgate_history.ingest).
- `smsgate_message_events`: every event applied, keyed by its event id (so applying one
  twice changes nothing); a message's timeline is its rows here.
- `smsgate_message_parts`: each sent part with its TP-MR.
"""

from __future__ import annotations

from smsgate.history.database import Session

SCHEMA_VERSION = 1
_SCHEMA_LOCK = 0x736D73676174  # "smsgat": the advisory lock key of schema changes

MESSAGES = "smsgate_messages"
EVENTS = "smsgate_message_events"
PARTS = "smsgate_message_parts"
META = "smsgate_history_meta"

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
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        event_id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        step TEXT NOT NULL,
        port TEXT,
        detail TEXT
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
    f"CREATE INDEX IF NOT EXISTS smsgate_message_events_message ON {EVENTS} (message_id, at)",
    f"CREATE INDEX IF NOT EXISTS smsgate_message_events_at ON {EVENTS} (at)",
)


def create(session: Session) -> None:
    """Create whatever is missing; safe to run from every process at every start."""
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
    session.script(INDEXES)
    found = session.one(f"SELECT value FROM {META} WHERE key = 'schema'")
    if found is None:
        session.execute(
            f"INSERT INTO {META} (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO NOTHING",
            (str(SCHEMA_VERSION),),
        )
    elif int(found[0]) > SCHEMA_VERSION:
        raise RuntimeError(
            f"the history store has schema {found[0]}, newer than this smsgate ({SCHEMA_VERSION})"
        )


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
