"""Users, password hashes, credentials (query, HTTP Basic, Bearer) and login throttling.

Passwords are stored as `scrypt:<salt hex>:<hash hex>` (hashlib.scrypt, n=2**14, r=8,
p=1). A plain value is accepted with a start-up warning. A successful scrypt check is
remembered as a keyed digest (BLAKE2b) of the name and password, so a busy integration
that sends its credentials with every request costs one keyed hash, not one scrypt, per
request; a wrong password never matches the remembered digest.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from smsgate.backoff import doubled
from smsgate.config import ApiUser, Config

from smsgate_api.errors import ApiError

log = logging.getLogger("smsgate.api.auth")

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_LEN = 32
_PREFIX = "scrypt:"
_VERIFIED_CACHE_MAX = 10_000
_THROTTLE_MAX = 100_000
_THROTTLE_FORGET = 900.0  # failures older than this are forgotten
_BLOCK_MAX = 3600.0


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_SCRYPT_LEN
    )


def hash_password(password: str) -> str:
    """A storable `scrypt:<salt>:<hash>` for `password`."""
    salt = secrets.token_bytes(16)
    return f"{_PREFIX}{salt.hex()}:{_scrypt(password, salt).hex()}"


def is_hashed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def verify_password(password: str, stored: str) -> bool:
    """Check `password` against a stored hash or plain value, in constant time."""
    if not is_hashed(stored):
        return hmac.compare_digest(password.encode(), stored.encode())
    try:
        salt_hex, hash_hex = stored[len(_PREFIX) :].split(":")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt), expected)


# Checked against when the user does not exist, so timing does not tell who exists.
_DUMMY_HASH = f"{_PREFIX}{'00' * 16}:{'00' * _SCRYPT_LEN}"


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated API user and what they may do."""

    name: str
    ports: tuple[str, ...] = ("*",)
    delivery_report: bool = True
    admin: bool = False

    @property
    def all_ports(self) -> bool:
        return "*" in self.ports

    def may_use(self, port: str) -> bool:
        return self.all_ports or any(fnmatch.fnmatchcase(port, p) for p in self.ports)

    @property
    def literal_ports(self) -> list[str]:
        """Allowed ports given by full name (not patterns)."""
        return [p for p in self.ports if not any(c in p for c in "*?[")]


def user_from_config(user: ApiUser) -> User:
    return User(
        name=user.name,
        ports=tuple(user.ports) or ("*",),
        delivery_report=user.delivery_report,
        admin=user.admin,
    )


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Blocks a (client, user) pair after repeated failures; the block doubles each time."""

    max_failures: int = 5
    block: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, str], _Failures] = field(default_factory=dict)

    def check(self, client: str, user: str) -> None:
        entry = self._entries.get((client, user))
        if entry is None:
            return
        wait = entry.blocked_until - self.clock()
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "throttled",
                f"too many failed logins; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self, client: str, user: str) -> None:
        now = self.clock()
        if len(self._entries) >= _THROTTLE_MAX:
            self._forget(now)
        entry = self._entries.setdefault((client, user), _Failures())
        if now - entry.last > _THROTTLE_FORGET:
            entry.count = 0
        entry.count += 1
        entry.last = now
        if entry.count >= self.max_failures:
            extra = entry.count - self.max_failures
            entry.blocked_until = now + doubled(self.block, min(extra, 16), _BLOCK_MAX)

    def succeeded(self, client: str, user: str) -> None:
        self._entries.pop((client, user), None)

    def _forget(self, now: float) -> None:
        stale = [
            key
            for key, e in self._entries.items()
            if now - e.last > _THROTTLE_FORGET and e.blocked_until < now
        ]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= _THROTTLE_MAX:  # under attack from many clients: start over
            self._entries.clear()


def unauthorized(message: str = "wrong username or password") -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="smsgate"'}
    )


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic ...` header, else None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def bearer_token(header: str | None) -> str | None:
    if not header or header[:7].lower() != "bearer ":
        return None
    token = header[7:].strip()
    return token or None


class Authenticator:
    """Checks credentials against the configured users, throttling failures."""

    def __init__(
        self,
        users: Sequence[ApiUser],
        *,
        max_failures: int = 5,
        block: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stored = {u.name: u.password for u in users}
        self._users = {u.name: user_from_config(u) for u in users}
        self._tokens = [
            (hashlib.sha256(u.token.encode()).digest(), u.name) for u in users if u.token
        ]
        self.throttle = LoginThrottle(max_failures=max_failures, block=block, clock=clock)
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        # One scrypt per distinct credential at a time: a burst of first requests waits
        # for the same check instead of starting one each.
        self._checking: dict[bytes, asyncio.Future[bool]] = {}

    @property
    def plain_password_users(self) -> list[str]:
        return [name for name, stored in self._stored.items() if not is_hashed(stored)]

    def _digest(self, name: str, password: str) -> bytes:
        # Keyed BLAKE2b is a MAC in its own right, and a third of the cost of HMAC-SHA256.
        return hashlib.blake2b(
            f"{name}\0{password}".encode(), key=self._key, digest_size=32
        ).digest()

    async def login(self, client: str, username: str | None, password: str | None) -> User:
        """The user these credentials belong to; 401 when wrong, 429 when throttled."""
        if not username or password is None:
            raise unauthorized("username and password are required (query, form or HTTP Basic)")
        self.throttle.check(client, username)
        digest = self._digest(username, password)
        cached = self._verified.get(username)
        if cached is not None and hmac.compare_digest(cached, digest):
            return self._users[username]
        stored = self._stored.get(username)
        if stored is not None and not is_hashed(stored):
            ok = hmac.compare_digest(password.encode(), stored.encode())
        else:
            ok = await self._scrypt_check(digest, password, stored)
        if not ok:
            self.throttle.failed(client, username)
            log.warning("failed login for user %r from %s", username, client)
            raise unauthorized()
        self.throttle.succeeded(client, username)
        if len(self._verified) >= _VERIFIED_CACHE_MAX:
            self._verified.clear()
        self._verified[username] = digest
        return self._users[username]

    async def _scrypt_check(self, digest: bytes, password: str, stored: str | None) -> bool:
        running = self._checking.get(digest)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._checking[digest] = future
        try:
            # scrypt takes tens of milliseconds: keep it off the event loop.
            ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
            ok = ok and stored is not None
            future.set_result(ok)
            return ok
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when none waits
            raise
        finally:
            del self._checking[digest]

    def token_user(self, client: str, token: str) -> User:
        """The user owning a bearer token; every token is compared, in constant time."""
        self.throttle.check(client, "")
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for candidate, name in self._tokens:
            if hmac.compare_digest(candidate, digest):
                found = name
        if found is None:
            self.throttle.failed(client, "")
            log.warning("failed token login from %s", client)
            raise ApiError(
                401, "unauthorized", "unknown token", headers={"WWW-Authenticate": "Bearer"}
            )
        return self._users[found]

    async def from_headers(self, client: str, authorization: str | None) -> User:
        """The user of an `Authorization: Bearer` or `Basic` header."""
        token = bearer_token(authorization)
        if token is not None:
            return self.token_user(client, token)
        basic = basic_credentials(authorization)
        if basic is None:
            raise unauthorized("credentials required: Authorization: Bearer <token> or Basic")
        return await self.login(client, *basic)


# --- the default user ----------------------------------------------------------------------


class GeneratedUser(msgspec.Struct, kw_only=True):
    """The credentials of a user made on first run; the password is shown once."""

    name: str
    password: str
    token: str
    path: str


class _StoredUser(msgspec.Struct, kw_only=True):
    name: str
    password: str  # scrypt hash
    token: str


DEFAULT_USER = "smsuser"
USER_FILE = "api-user.json"


def ensure_users(config: Config, state_dir: str | Path) -> tuple[Config, GeneratedUser | None]:
    """Config with at least one API user: a default one made (and saved) on first run.

    Returns the config to use and, only when a user was just made, its credentials to show.
    """
    if config.api.users:
        return config, None
    path = Path(state_dir) / USER_FILE
    generated: GeneratedUser | None = None
    if path.exists():
        stored = msgspec.json.decode(path.read_bytes(), type=_StoredUser)
    else:
        password = secrets.token_urlsafe(12)
        stored = _StoredUser(
            name=DEFAULT_USER, password=hash_password(password), token=secrets.token_urlsafe(24)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(msgspec.json.encode(stored))
        generated = GeneratedUser(
            name=stored.name, password=password, token=stored.token, path=str(path)
        )
    user = ApiUser(name=stored.name, password=stored.password, token=stored.token)
    api = msgspec.structs.replace(config.api, users=[user])
    return msgspec.structs.replace(config, api=api), generated
