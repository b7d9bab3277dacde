"""The agent's local spool: what it could not publish survives the process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from smsgate_agent.spool import Spool


def test_nothing_is_written_until_something_is_spooled(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "state" / "spool.sqlite")
    assert len(spool) == 0
    assert spool.entries() == []
    assert spool.get("x") is None
    assert not (tmp_path / "state").exists()


def test_entries_in_order_replaced_by_key_and_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.put("m1:result", "result", b"one")
    spool.put("m2:result", "result", b"two")
    spool.put("m1:result", "result", b"one again")
    assert [e.key for e in spool.entries()] == ["m2:result", "m1:result"]
    assert spool.get("m1:result") is not None
    spool.remove("m2:result")
    assert [e.body for e in spool.entries()] == [b"one again"]
    spool.close()


def test_an_entry_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    writer = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from smsgate_agent.spool import Spool\n"
        "Spool(Path(sys.argv[1])).put('m7:result', 'result', b'sent')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", writer, str(path)], check=False)
    assert done.returncode == -9
    [entry] = Spool(path).entries()
    assert (entry.key, entry.kind, entry.body) == ("m7:result", "result", b"sent")


def test_an_entry_is_added_once_and_the_first_one_stays(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    assert spool.add("m1:result", "result", b"first")
    assert not spool.add("m1:result", "result", b"second")  # tried before: kept as it was
    [entry] = spool.entries()
    assert entry.body == b"first"
    spool.remove("m1:result")
    assert spool.add("m1:result", "result", b"again")
    spool.close()


def test_a_spool_an_earlier_version_made_is_read_and_written(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute(
        "CREATE TABLE spool (key TEXT PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL,"
        " stored REAL NOT NULL)"
    )
    old.execute("INSERT INTO spool VALUES ('m1:result', 'result', x'6f6c64', 1.0)")
    old.close()
    spool = Spool(path)
    assert not spool.add("m1:result", "result", b"new")
    assert spool.add("m2:result", "result", b"two")
    assert [(e.key, e.body) for e in spool.entries()] == [
        ("m1:result", b"old"),
        ("m2:result", b"two"),
    ]
    spool.remove("m1:result")
    assert [e.key for e in spool.entries()] == ["m2:result"]
    spool.close()
