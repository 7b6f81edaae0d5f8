"""The promotion Lease's rules, without a cluster: when a held lock counts as lost, when a Lease
may be taken over, and what SHIPYARD_LEASE_S accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client import V1LeaseSpec

from shipyard.targets import TargetError
from shipyard.targets.lease import Timing, expired, lease_duration_s, renewal_verdict

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc)


def test_renewals_come_three_times_a_lease_and_give_up_a_third_before_it_runs_out():
    timing = Timing(60)
    assert (timing.renew_every_s, timing.renew_deadline_s) == (20, 40)


def test_a_lock_is_kept_while_renewals_fail_for_less_than_the_renew_deadline():
    assert renewal_verdict(Timing(60), 39.9, "me", "me") == ""
    assert renewal_verdict(Timing(60), 39.9, None, "me") == ""  # the Lease could not even be read


def test_a_lock_is_lost_past_the_renew_deadline():
    reason = renewal_verdict(Timing(60), 40, "me", "me")
    assert "no renewal succeeded for 40 s" in reason and "renew deadline is 40 s" in reason


def test_a_lock_is_lost_at_once_when_the_lease_names_someone_else():
    assert renewal_verdict(Timing(60), 1, "bob@desk:7", "me") == "the Lease now names bob@desk:7"
    assert renewal_verdict(Timing(60), 1, "", "me") == "the Lease now names no holder"


def _spec(holder: str | None, renewed_ago_s: float | None, duration_s: int = 60) -> V1LeaseSpec:
    renewed = NOW - timedelta(seconds=renewed_ago_s) if renewed_ago_s is not None else None
    return V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration_s, renew_time=renewed)


def test_a_lease_renewed_within_its_duration_is_held():
    assert not expired(_spec("alice", 59), NOW)


def test_a_lease_not_renewed_within_its_duration_may_be_taken_over():
    assert expired(_spec("alice", 60), NOW)


def test_a_lease_without_holder_or_renewal_may_be_taken_over():
    assert expired(_spec(None, 1), NOW)
    assert expired(_spec("alice", None), NOW)
    assert expired(None, NOW)


def test_lease_duration_defaults_to_a_minute(monkeypatch):
    monkeypatch.delenv("SHIPYARD_LEASE_S", raising=False)
    assert lease_duration_s() == 60
    monkeypatch.setenv("SHIPYARD_LEASE_S", "15")
    assert lease_duration_s() == 15


@pytest.mark.parametrize("raw", ["9", "3601", "1.5", "soon"])
def test_lease_duration_out_of_range_names_the_variable_and_the_rule(monkeypatch, raw):
    monkeypatch.setenv("SHIPYARD_LEASE_S", raw)
    with pytest.raises(TargetError, match=r"SHIPYARD_LEASE_S=.*from 10 to 3600"):
        lease_duration_s()
