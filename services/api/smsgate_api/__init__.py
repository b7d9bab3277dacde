"""smsgate API: the gateway-compatible `/sendsms`, the JSON API under `/api/v1`, auth."""

from smsgate_api.app import create_app, run_api, serve_api
from smsgate_api.auth import GeneratedUser, ensure_users, hash_password

__all__ = [
    "GeneratedUser",
    "create_app",
    "ensure_users",
    "hash_password",
    "run_api",
    "serve_api",
]
