"""+CMS/+CME error codes: what they mean and what a sender does about them."""

from __future__ import annotations

import pytest
from smsgate_agent.cms import (
    SendErrorKind,
    classify_cms,
    cme_code,
    cms_code,
    describe_cme,
    describe_cms,
)


@pytest.mark.parametrize("code", [1, 8, 10, 21, 28, 29, 30, 50, 69, 304, 305, 330])
def test_permanent(code: int) -> None:
    assert classify_cms(code) is SendErrorKind.PERMANENT


@pytest.mark.parametrize("code", [38, 41, 42, 47, 331, 332, 512, 513, 514, 515])
def test_temporary(code: int) -> None:
    assert classify_cms(code) is SendErrorKind.TEMPORARY


@pytest.mark.parametrize("code", [500, None, 320, 340])
def test_ambiguous(code: int | None) -> None:
    assert classify_cms(code) is SendErrorKind.AMBIGUOUS


def test_other_network_causes_are_about_the_message() -> None:
    assert classify_cms(96) is SendErrorKind.PERMANENT  # invalid mandatory information


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (" 38", 38),
        ("Network out of order", 38),
        ('"unknown error"', 500),
        ("SIM busy", 314),
        ("no network service", 331),
        ("something new", None),
    ],
)
def test_cms_texts(text: str, code: int | None) -> None:
    assert cms_code(text) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [("14", 14), ("SIM busy", 14), ("SIM not inserted", 10), ("incorrect password", 16)],
)
def test_cme_texts(text: str, code: int) -> None:
    assert cme_code(text) == code


def test_descriptions() -> None:
    assert describe_cms(42) == "+CMS ERROR: 42 (congestion)"
    assert describe_cms(777) == "+CMS ERROR: 777"
    assert describe_cms(None) == "+CMS ERROR"
    assert describe_cme(14) == "+CME ERROR: 14 (SIM busy)"
