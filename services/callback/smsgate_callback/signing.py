"""HMAC-SHA256 signatures on callbacks, and the check a receiver runs.

Scheme `v1`: with `t` the decimal Unix time in `X-Smsgate-Timestamp` and `content` the
raw request body (POST) or the raw query string after `?` (GET), byte for byte as sent,

    X-Smsgate-Signature: v1=<lowercase hex of HMAC-SHA256(secret, t + "." + content)>

A receiver recomputes it over the bytes it received, compares in constant time and
rejects timestamps more than five minutes away from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time

EVENT_ID_HEADER = "X-Smsgate-Event-Id"
EVENT_TYPE_HEADER = "X-Smsgate-Event-Type"
ATTEMPT_HEADER = "X-Smsgate-Attempt"
TIMESTAMP_HEADER = "X-Smsgate-Timestamp"
SIGNATURE_HEADER = "X-Smsgate-Signature"
SCHEME = "v1"
TOLERANCE = 300.0  # seconds a receiver accepts between our clock and its own


def signed_content(method: str, query: bytes, body: bytes) -> bytes:
    """What the signature covers besides the timestamp: the query for GET, else the body."""
    return query if method.upper() == "GET" else body


def sign(secret: str, timestamp: str, content: bytes) -> str:
    """The `X-Smsgate-Signature` value for `content` sent at `timestamp`."""
    payload = timestamp.encode("ascii") + b"." + content
    digest = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(
    secret: str,
    timestamp: str,
    content: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> bool:
    """True when one `v1=` entry of `signature` matches and the timestamp is fresh."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    expected = sign(secret, timestamp, content)
    # Comma-separated entries leave room for signing with an old and a new key at once.
    return any(hmac.compare_digest(expected, entry.strip()) for entry in signature.split(","))
