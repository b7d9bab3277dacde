"""Password hashes, credentials, throttling and the default user."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from smsgate.config import ApiConfig, ApiUser, Config
from smsgate_api import auth
from smsgate_api.errors import ApiError

HASH = auth.hash_password("s3cret")


def test_scrypt_hashes_verify() -> None:
    assert HASH.startswith("scrypt:")
    assert auth.verify_password("s3cret", HASH)
    assert not auth.verify_password("S3cret", HASH)
    assert not auth.verify_password("s3cret", "scrypt:zz:zz")
    assert auth.verify_password("plain", "plain")
    assert auth.hash_password("s3cret") != HASH  # salted


def test_basic_and_bearer_headers() -> None:
    header = "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert auth.basic_credentials(header) == ("user", "pa:ss")
    assert auth.basic_credentials("Basic !!") is None
    assert auth.basic_credentials(None) is None
    assert auth.bearer_token("Bearer abc") == "abc"
    assert auth.bearer_token("Basic abc") is None


def test_user_ports() -> None:
    user = auth.User(name="u", ports=("lte-1", "hostb-*"))
    assert user.may_use("lte-1")
    assert user.may_use("hostb-lte-9")
    assert not user.may_use("lte-2")
    assert user.literal_ports == ["lte-1"]
    assert auth.User(name="all").all_ports


async def test_login_caches_and_throttles() -> None:
    now = [0.0]
    users = [ApiUser(name="a", password=HASH, token="t"), ApiUser(name="b", password="pw")]
    authenticator = auth.Authenticator(users, max_failures=2, block=10, clock=lambda: now[0])
    assert authenticator.plain_password_users == ["b"]
    assert (await authenticator.login("c1", "a", "s3cret")).name == "a"
    assert (await authenticator.login("c1", "a", "s3cret")).name == "a"  # from the cache
    for _ in range(2):
        with pytest.raises(ApiError) as failed:
            await authenticator.login("c1", "a", "wrong")
        assert failed.value.status == 401
    with pytest.raises(ApiError) as blocked:
        await authenticator.login("c1", "a", "s3cret")
    assert blocked.value.status == 429
    assert blocked.value.headers["Retry-After"] == "10"
    assert (await authenticator.login("c2", "a", "s3cret")).name == "a"  # other client
    now[0] = 11.0
    assert (await authenticator.login("c1", "a", "s3cret")).name == "a"
    with pytest.raises(ApiError):
        await authenticator.login("c1", "nobody", "x")
    assert authenticator.token_user("c1", "t").name == "a"
    with pytest.raises(ApiError):
        authenticator.token_user("c1", "nope")


def test_ensure_users_makes_a_default_user_once(tmp_path: Path) -> None:
    config, generated = auth.ensure_users(Config(), tmp_path)
    assert generated is not None
    [user] = config.api.users
    assert user.name == "smsuser"
    assert auth.verify_password(generated.password, user.password)
    assert user.token == generated.token
    assert (tmp_path / auth.USER_FILE).stat().st_mode & 0o777 == 0o600
    again, none = auth.ensure_users(Config(), tmp_path)
    assert none is None
    assert again.api.users == config.api.users
    configured = Config(api=ApiConfig(users=[ApiUser(name="x", password="y")]))
    assert auth.ensure_users(configured, tmp_path) == (configured, None)


async def test_a_burst_of_first_logins_runs_scrypt_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", counting)
    authenticator = auth.Authenticator([ApiUser(name="a", password=HASH)])
    users = await asyncio.gather(*(authenticator.login("c", "a", "s3cret") for _ in range(10)))
    assert {u.name for u in users} == {"a"}
    assert calls == ["s3cret"]
