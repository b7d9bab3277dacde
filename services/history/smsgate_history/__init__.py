"""The history store: SMS_EVENTS, folded into SQL (SQLite or PostgreSQL)."""
