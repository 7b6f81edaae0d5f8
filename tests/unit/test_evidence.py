"""The evidence's schemas: what is written is what is read back, and a record that was changed
into something else is refused naming the record, the field and the rule, not read as a dict
with a missing key somewhere later."""

from __future__ import annotations

import pytest

from shipyard.evidence import ReleaseRecord, RecordError, Verdict, read, read_all

VERDICT = {
    "schema": "shipyard.dev/verdict/v1", "environment": "staging", "target": "kubernetes",
    "subject": {"image": "registry/app@sha256:" + "a" * 64, "model_version": "m1"},
    "passed": True,
    "suites": [{"name": "smoke", "status": "passed", "seconds": 3.2, "metrics": {"failed": 0}, "failures": []}],
    "gates": [{"suite": "smoke", "metric": "failed", "min": None, "max": 0, "measured": 0, "passed": True,
               "reason": "within bounds"}],
    "not_run": [], "not_exercised": [], "started_at": "2026-12-07T01:00:00+00:00",
    "finished_at": "2026-12-07T01:03:00+00:00", "host": "ci", "user": "ana",
    "record": "configmap/shipyard-verdict-1 in app-staging", "generated_from": {},
}
RELEASE = {
    "seq": 3, "environment": "production", "kind": "promote", "subject": "registry/app@sha256:" + "a" * 64,
    "previous": "", "model_version": "m1", "training_data_hash": "", "verdict": {"record": "v/1", "environment": "staging", "finished_at": "t", "passed": True},
    "post_deploy": [], "approved": True, "by": "ana@host:1", "at": "2026-12-07T01:05:00+00:00",
    "outcome": "succeeded", "note": "", "canary": None, "record": "configmap/shipyard-release-00003 in app-production",
}


def test_a_verdict_reads_back_as_written_and_keeps_fields_it_does_not_know():
    doc = dict(VERDICT, written_by_a_newer_shipyard={"x": 1})
    verdict = read(Verdict, doc)
    assert verdict.judges(doc["subject"]["image"]) and not verdict.judges("registry/app@sha256:" + "b" * 64)
    assert verdict.verified == doc["subject"]["image"]
    assert verdict.document() == doc


def test_a_release_record_reads_back_as_written():
    assert read(ReleaseRecord, RELEASE).document() == RELEASE


@pytest.mark.parametrize("change,says", [
    ({"passed": "maybe"}, "passed: Input should be a valid boolean"),
    ({"suites": [{"name": "smoke"}]}, "suites.0.status: Field required"),
    ({"gates": [{"suite": "smoke", "metric": "failed", "passed": "yes please"}]}, "gates.0.passed"),
])
def test_a_verdict_changed_by_hand_is_refused_naming_the_record_and_the_field(change, says):
    with pytest.raises(RecordError, match="configmap/shipyard-verdict-1 in app-staging is not a valid Verdict") as err:
        read(Verdict, {**VERDICT, **change})
    assert says in str(err.value) and "restore it, or delete it" in str(err.value)


@pytest.mark.parametrize("change,says", [
    ({"seq": 0}, "seq: Input should be greater than or equal to 1"),
    ({"outcome": "fine"}, "outcome: Input should be 'succeeded', 'failed', 'rolled-back', 'aborted' or 'planned'"),
    ({"kind": "deploy"}, "kind: Input should be 'promote', 'rollback' or 'auto-rollback'"),
])
def test_a_release_record_changed_by_hand_is_refused(change, says):
    with pytest.raises(RecordError, match="shipyard-release-00003") as err:
        read_all(ReleaseRecord, [RELEASE, {**RELEASE, **change}])
    assert says in str(err.value)
