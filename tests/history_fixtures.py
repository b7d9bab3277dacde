"""The history store's two backends for tests: SQLite in a temp dir, and a real PostgreSQL
(from the pgserver wheel) started once per session, with a fresh database per test.

`history_url` is parametrized, so every test that takes it runs on both.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from smsgate.embedded import EmbeddedPostgres

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: as root the server runs as `nobody`, who cannot enter it.
    data = Path(tempfile.mkdtemp(prefix="smsgate-pg-"))
    server = EmbeddedPostgres(data_dir=data)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


def fresh_database(server: EmbeddedPostgres) -> str:
    name = f"history_{next(_databases)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty history store: `sqlite:////tmp/...` or `postgresql://...`."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    server: EmbeddedPostgres = request.getfixturevalue("postgres_server")
    return fresh_database(server)
