"""Who may decide a send whose claim another agent holds (smsgate_agent.liveness)."""

from __future__ import annotations

import pytest
from smsgate.contracts import Lease
from smsgate_agent.liveness import Claim, Verdict, judge

NOW = 1_000_000.0
LEASE = 15.0
HOLDER_TIMEOUT = 900.0


def claim(agent: str = "host-a", boot: str = "a1", at: float = NOW - 5) -> Claim:
    return Claim(agent=agent, boot=boot, port="lte-1", token="t", time=at)


def lease(boot: str = "a1", renewed: float = NOW - 1) -> Lease:
    return Lease(agent="host-a", boot=boot, renewed=renewed, lease=LEASE)


def verdict(
    c: Claim | None, le: Lease | None, *, agent: str = "host-b", boot: str = "b1"
) -> Verdict:
    return judge(c, le, agent=agent, boot=boot, now=NOW, holder_timeout=HOLDER_TIMEOUT).verdict


def test_a_live_holder_decides() -> None:
    assert verdict(claim(), lease()) is Verdict.HOLDER_DECIDES


def test_a_holder_cut_off_for_less_than_holder_timeout_still_decides() -> None:
    silent = lease(renewed=NOW - LEASE - HOLDER_TIMEOUT + 1)
    judgement = judge(
        claim(at=NOW - 2000),
        silent,
        agent="host-b",
        boot="b1",
        now=NOW,
        holder_timeout=HOLDER_TIMEOUT,
    )
    assert judgement.verdict is Verdict.HOLDER_DECIDES
    assert judgement.holder_silent_since == silent.renewed  # the interim status says since when


def test_a_holder_silent_past_its_lease_and_holder_timeout_is_lost() -> None:
    gone = lease(renewed=NOW - LEASE - HOLDER_TIMEOUT - 1)
    assert verdict(claim(at=NOW - 2000), gone) is Verdict.INTERRUPTED


def test_a_fresh_claim_counts_as_a_sign_of_life_even_with_an_old_lease() -> None:
    # The lease was last renewed long ago, but the claim itself is new: the holder lives.
    old = lease(renewed=NOW - LEASE - HOLDER_TIMEOUT - 100)
    assert verdict(claim(at=NOW - 1), old) is Verdict.HOLDER_DECIDES


def test_a_holder_that_started_again_has_published_its_spool() -> None:
    assert verdict(claim(boot="a1"), lease(boot="a2")) is Verdict.INTERRUPTED


def test_this_agents_own_claim_from_this_run_is_no_ports_any_more() -> None:
    # `handling` (the jobs this agent's ports hold) is checked before: none holds it.
    assert verdict(claim(agent="host-b", boot="b1"), None) is Verdict.INTERRUPTED


def test_this_agents_claim_from_an_earlier_run() -> None:
    assert verdict(claim(agent="host-b", boot="b0"), None) is Verdict.INTERRUPTED


def test_an_unreadable_claim_is_interrupted_as_before() -> None:
    assert verdict(None, None) is Verdict.INTERRUPTED


@pytest.mark.parametrize(
    ("age", "expected"), [(1.0, Verdict.HOLDER_DECIDES), (HOLDER_TIMEOUT + 1, Verdict.INTERRUPTED)]
)
def test_a_holder_without_a_lease_is_judged_by_its_claim(age: float, expected: Verdict) -> None:
    assert verdict(claim(at=NOW - age), None) is expected
