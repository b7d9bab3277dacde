"""The message history in SQL: what the history store writes and the API reads.

`database` runs DB-API connections (SQLite from the standard library, PostgreSQL through
psycopg) off the event loop; `schema` is the tables both sides agree on; `records` the
rows as the API shows them; `search` the filters, cursor pages, timelines and exports.
"""
