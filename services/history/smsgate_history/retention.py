"""Pruning: messages older than `retention_days`, with their timelines and parts."""

from __future__ import annotations

import datetime as dt

from smsgate.history import schema, statements
from smsgate.history.database import Database, Session
from smsgate.history.records import micros

BATCH = 2000  # rows per transaction: a prune never holds the store for long


def cutoff(now: dt.datetime, retention_days: float) -> dt.datetime | None:
    """Messages created before this go; None when retention is off (0 days)."""
    if retention_days <= 0:
        return None
    return now - dt.timedelta(days=retention_days)


def _prune_batch(session: Session, before: int) -> int:
    ids = [
        row[0]
        for row in session.all(
            f"SELECT id FROM {schema.MESSAGES} WHERE created < ? LIMIT {BATCH}", (before,)
        )
    ]
    if ids:
        # Always BATCH ids (smsgate.history.statements): a statement for each number of ids
        # left would stay prepared on the connection, ~0.6 KiB an id for the three.
        padded = statements.padded(ids, (BATCH,))
        marks = ", ".join(["?"] * BATCH)
        session.execute(f"DELETE FROM {schema.EVENTS} WHERE message_id IN ({marks})", padded)
        session.execute(f"DELETE FROM {schema.PARTS} WHERE message_id IN ({marks})", padded)
        session.execute(f"DELETE FROM {schema.MESSAGES} WHERE id IN ({marks})", padded)
        return len(ids)
    # What is left: events of messages pruned before them (a late report), if any.
    return session.execute(
        f"DELETE FROM {schema.EVENTS} WHERE (message_id, event_id) IN "
        f"(SELECT message_id, event_id FROM {schema.EVENTS} WHERE at < ? LIMIT {BATCH})",
        (before,),
    )


async def prune(db: Database, before: dt.datetime, *, batches: int | None = None) -> int:
    """Delete messages created before `before`, at most `batches` transactions of them
    (None: all); the number of rows removed (0: nothing was left)."""
    limit = micros(before)
    removed = 0
    done = 0
    while batches is None or done < batches:
        count = await db.run(lambda s: _prune_batch(s, limit))
        if count <= 0:
            break
        removed += count
        done += 1
    return removed
