"""Console sessions: a signed cookie naming the user, with a CSRF token for changes.

The cookie is `<payload>.<signature>`, both base64url: the payload is the user name, an
expiry time and a random CSRF token; the signature an HMAC-SHA256 under a key derived
from the configured users (their names, password hashes and tokens). Every API process
with the same config therefore accepts the same cookies, and changing any user's
password signs every session out. Nothing is stored on the server, so logging out
clears the cookie in the browser and a stolen cookie stays valid until it expires.

A request authenticated by the cookie (not by an `Authorization` header) must send the
session's CSRF token in `X-CSRF-Token` unless it is a GET: the cookie is also
`SameSite=Strict`, the token covers browsers and proxies that ignore that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import Callable

import msgspec
from smsgate.config import ApiUser
from starlette.requests import Request
from starlette.responses import Response

from smsgate_api.auth import User, user_from_config
from smsgate_api.errors import ApiError
from smsgate_api.runtime import ApiRuntime

COOKIE = "smsgate_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = 12 * 3600  # seconds a console login lasts
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_KEY_LABEL = b"smsgate console session v1"


class Session(msgspec.Struct, array_like=True, frozen=True):
    """What the cookie carries."""

    user: str
    expires: int  # unix seconds
    csrf: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(users: list[ApiUser]) -> bytes:
    """The signing key: a digest of every user's credentials, the same in every process."""
    material = msgspec.json.encode([(u.name, u.password, u.token or "") for u in users])
    return hmac.new(_KEY_LABEL, material, hashlib.sha256).digest()


class Sessions:
    """Issues and checks session cookies for one set of users."""

    def __init__(self, users: list[ApiUser], clock: Callable[[], float] = time.time) -> None:
        self._key = session_key(users)
        self._users = {u.name: user_from_config(u) for u in users}
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user: str, lifetime: int = LIFETIME) -> tuple[str, Session]:
        """A new cookie value for `user` and the session it carries."""
        session = Session(user, int(self._clock()) + lifetime, secrets.token_urlsafe(18))
        payload = _b64(_encode(session))
        return f"{payload}.{self._sign(payload)}", session

    def read(self, cookie: str) -> Session | None:
        """The session in a cookie value, or None when forged, malformed or expired."""
        payload, dot, signature = cookie.partition(".")
        if not dot or not payload.isascii() or not signature.isascii():
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            session = _decode(_unb64(payload))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            return None
        if session.expires <= self._clock() or session.user not in self._users:
            return None
        return session

    def user(self, session: Session) -> User:
        return self._users[session.user]


_by_runtime: weakref.WeakKeyDictionary[ApiRuntime, Sessions] = weakref.WeakKeyDictionary()


def sessions(rt: ApiRuntime) -> Sessions:
    """The session signer of this runtime's users (made once)."""
    found = _by_runtime.get(rt)
    if found is None:
        found = _by_runtime[rt] = Sessions(rt.config.api.users)
    return found


def expired() -> ApiError:
    # No WWW-Authenticate: a browser must show the console's login form, not its own dialog.
    return ApiError(401, "session_expired", "the console session has expired; log in again")


def request_session(request: Request, rt: ApiRuntime) -> Session | None:
    """The valid session of a request's cookie; None without a cookie, 401 for a bad one."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    session = sessions(rt).read(cookie)
    if session is None:
        raise expired()
    return session


def session_user(request: Request, rt: ApiRuntime) -> User | None:
    """The user of a request's session cookie (None without one); checks CSRF on changes."""
    session = request_session(request, rt)
    if session is None:
        return None
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise ApiError(403, "csrf", f"a console request must carry the {CSRF_HEADER} header")
    return sessions(rt).user(session)


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=LIFETIME,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def clear_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
