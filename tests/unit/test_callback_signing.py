"""HMAC-SHA256 signing: a fixed vector, verification, tampering, staleness, key rotation."""

from __future__ import annotations

from smsgate_callback import signing

# printf '1700000000.num=1' | openssl dgst -sha256 -hmac key
VECTOR = "v1=57124a205bea3a2a7b460d64ad11214bf085733d638d6ce7fbee00b56f98d6c9"


def test_sign_matches_an_independent_hmac() -> None:
    assert signing.sign("key", "1700000000", b"num=1") == VECTOR


def test_verify_accepts_a_fresh_signature() -> None:
    assert signing.verify("key", "1700000000", b"num=1", VECTOR, now=1700000100)


def test_verify_rejects_tampering_wrong_keys_and_garbage() -> None:
    now = 1700000000
    assert not signing.verify("key", "1700000000", b"num=2", VECTOR, now=now)
    assert not signing.verify("other", "1700000000", b"num=1", VECTOR, now=now)
    assert not signing.verify("key", "1700000001", b"num=1", VECTOR, now=now)
    assert not signing.verify("key", "1700000000", b"num=1", VECTOR.upper(), now=now)
    assert not signing.verify("key", "not-a-time", b"num=1", VECTOR, now=now)
    assert not signing.verify("key", "1700000000", b"num=1", "", now=now)


def test_verify_rejects_stale_and_future_timestamps() -> None:
    assert not signing.verify("key", "1700000000", b"num=1", VECTOR, now=1700000301)
    assert not signing.verify("key", "1700000000", b"num=1", VECTOR, now=1699999699)
    assert signing.verify("key", "1700000000", b"num=1", VECTOR, now=1700000301, tolerance=400)


def test_any_of_several_signatures_may_match() -> None:
    header = f"v1={'0' * 64}, {VECTOR}"
    assert signing.verify("key", "1700000000", b"num=1", header, now=1700000000)


def test_get_signs_the_query_post_the_body() -> None:
    assert signing.signed_content("GET", b"a=1", b"") == b"a=1"
    assert signing.signed_content("get", b"a=1", b"") == b"a=1"
    assert signing.signed_content("POST", b"", b'{"a":1}') == b'{"a":1}'
