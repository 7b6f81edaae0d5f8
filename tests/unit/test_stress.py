"""The stress suite's arithmetic on synthetic requests (shipyard/harness/stress.py): where a ramp
saturates, answers and refusals apart, recovery at the first clean window, and no vacuous pass: a
run that could not overload the service has no data for any gate, with the reason."""

from __future__ import annotations

from shipyard.harness.gates import judge
from shipyard.config import Bound
from shipyard.harness.stress import Generator, Step, measure_step, ramp_rates, recovered, summarize, timeline

CALM = Generator(cpu=0.2, lag_p99_ms=1.0)


def _steady(start: float, seconds: float, rate: float, ms: float, status: int = 200, phase: str = "p") -> list:
    return [(start + i / rate, phase, ms, status) for i in range(int(seconds * rate))]


def _ramp() -> list[Step]:
    """100/s answered in full, then 200/s offered of which only 150/s come back: saturated."""
    return [Step(100, 100.0, 0.0, 5.0, CALM), Step(200, 150.0, 0.0, 40.0, CALM)]


def _run(overload: list, recovery: list, steps: list[Step] | None = None, generator: Generator = CALM) -> dict:
    every = overload + recovery
    return summarize(steps or _ramp(), overload, 450.0, 10.0, recovery, 20.0, every, 100, generator)


def test_a_step_whose_answers_fall_behind_the_offer_is_saturated():
    samples = _steady(0.0, 10, 200, 5.0)
    # answers of the second half's requests came 2 s late: only half of them completed in it
    late = [(t, p, 2000.0 if t >= 7.5 else ms, s) for t, p, ms, s in samples]
    on_time = measure_step(samples, 0.0, 10, 200, CALM)
    behind = measure_step(late, 0.0, 10, 200, CALM)
    assert on_time.answered_rps == 200 and not on_time.saturated(100)
    assert behind.answered_rps < 0.9 * 200 and behind.saturated(100)
    assert Step(200, 200.0, 0.02, 5.0, CALM).saturated(100)  # refusing: saturated
    assert Step(200, 200.0, 0.0, 150.0, CALM).saturated(100)  # slower than the limit: saturated


def test_the_overload_separates_answers_from_fast_refusals_and_finds_recovery():
    overload = _steady(10.0, 10, 100, 40.0, phase="overload") + _steady(10.0, 10, 350, 2.0, 503, phase="overload")
    recovery = [(20.1, "recovery", 300.0, 200), (21.0, "recovery", 20.0, 503)]  # still hot just after
    recovery += _steady(22.0, 6, 20, 30.0, phase="recovery")
    recovery += [(23.0, "recovery", 0.0, 0)]  # one connection failure: an error
    r = _run(overload, recovery)
    m = r["metrics"]
    assert r["inconclusive"] is None
    assert m["saturation_rps"] == 150.0 and m["overload_offered_rps"] == 450.0
    assert m["answered_p99_ms"] == 40.0 and m["rejection_p99_ms"] == 2.0
    assert m["overload_answered_rps"] == 100.0 and m["overload_rejected_share"] == round(3500 / 4500, 4)
    assert m["server_errors"] == 1
    assert m["recovery_s"] == 5.5  # the window [23.5, 25.5) is the first past both the 503 and the failure


def test_no_refusal_during_the_overload_is_no_data_for_the_refusal_gate():
    overload = _steady(10.0, 10, 450, 60.0, phase="overload")
    m = _run(overload, _steady(20.0, 4, 45, 5.0, phase="recovery"))["metrics"]
    assert m["rejection_p99_ms"] is None and m["overload_rejected_share"] == 0
    gate = judge("stress", "rejection_p99_ms", Bound(max=100), m["rejection_p99_ms"], ran=True)
    assert not gate.passed and gate.reason.startswith("no data")


def test_a_bound_generator_makes_every_gate_no_data_naming_it():
    overload = _steady(10.0, 10, 100, 40.0, phase="overload") + _steady(10.0, 10, 100, 2.0, 503, phase="overload")
    starved = Generator(cpu=0.95, lag_p99_ms=400.0, offered_share=0.3)  # 30 % of 450/s: 135/s < 150/s
    r = _run(overload, [], generator=starved)
    assert "generator could not overload" in r["inconclusive"] and "CPU 0.95" in r["inconclusive"]
    assert "135/s, no more than the saturation measured, 150/s" in r["inconclusive"]
    assert set(r["metrics"].values()) == {None}
    assert r["measured"]["rejection_p99_ms"] == 2.0  # kept for the record, not for the gates
    gate = judge("stress", "answered_p99_ms", Bound(max=100), r["metrics"]["answered_p99_ms"], True, r["inconclusive"])
    assert not gate.passed and gate.reason == f"no data: {r['inconclusive']}"


def test_a_ramp_the_generator_could_not_push_to_saturation_is_inconclusive():
    behind = Generator(cpu=0.5, lag_p99_ms=900.0, offered_share=0.7)
    r = _run([], [], steps=[Step(100, 100.0, 0.0, 5.0, CALM), Step(200, 140.0, 0.0, 5.0, behind)])
    assert "could not saturate the service" in r["inconclusive"] and "70% of 200/s" in r["inconclusive"]
    assert set(r["metrics"].values()) == {None}


def test_a_late_generator_that_still_sent_more_than_the_service_answers_counts():
    """A generator pod starved on the node it shares with the scorer sends less than asked; where
    the service could not keep up even with that, the service was the bottleneck (make test's CI,
    stop 41: 87 % of 6 400/s sent, the run wrongly called inconclusive)."""
    late = Generator(cpu=0.18, lag_p99_ms=900.0, offered_share=0.87)
    refusing = Step(6400, 4800.0, 0.05, 900.0, late)
    falling_behind = Step(6400, 4000.0, 0.0, 900.0, late)  # 4 000 < 90 % of the 5 568/s sent
    kept_up = Step(6400, 5500.0, 0.0, 900.0, late)  # the 900 ms p95 is the generator's lateness
    assert refusing.saturated(100) and falling_behind.saturated(100) and not kept_up.saturated(100)
    assert round(falling_behind.sent_rps) == 5568
    overload = _steady(10.0, 10, 100, 40.0, phase="overload") + _steady(10.0, 10, 250, 2.0, 503, phase="overload")
    r = _run(overload, _steady(20.0, 4, 45, 5.0, phase="recovery"),
             generator=Generator(cpu=0.3, lag_p99_ms=300.0, offered_share=0.8))
    assert r["inconclusive"] is None
    assert r["metrics"]["overload_offered_rps"] == 360.0  # what was sent (80 % of 450/s), not what was asked
    assert r["metrics"]["overload_answered_rps"] == 80.0  # over the 12.5 s the 10 s phase took to send


def test_a_service_the_ramp_never_saturated_is_inconclusive():
    r = _run([], [], steps=[Step(5, 5.0, 0.0, 3.0, CALM), Step(10, 10.0, 0.0, 3.0, CALM)])
    assert r["inconclusive"].startswith("the service was never saturated: it answered 10 of 10")
    assert "peak_rps" in r["inconclusive"] and set(r["metrics"].values()) == {None}


def test_an_overload_below_the_saturation_is_inconclusive():
    overload = _steady(10.0, 10, 100, 4.0, phase="overload")
    r = summarize(_ramp(), overload, 100.0, 10.0, [], 20.0, overload, 100, CALM)
    assert "offered 100 requests/s, less than the saturation measured (150/s)" in r["inconclusive"]


def test_bentomls_own_concurrency_limit_refuses_it_does_not_fail():
    """`traffic.max_concurrency` makes BentoML answer 429: a refusal, like admission's 503."""
    overload = [(10.0 + i * 0.01, "overload", 5.0, 429 if i % 2 else 200) for i in range(1000)]
    m = _run(overload, _steady(20.0, 3, 45, 5.0, phase="recovery"))["metrics"]
    assert m["server_errors"] == 0 and m["overload_rejected_share"] == 0.5


def test_recovered_needs_a_whole_clean_window():
    rate = 50
    clean = _steady(0.0, 4, rate, 10.0)
    assert recovered(clean, rate, 100)
    assert not recovered(clean[: len(clean) // 2] + clean[len(clean) // 2 + 10:], rate, 100)  # answers missing
    assert not recovered([(t, p, 500.0, s) for t, p, _, s in clean], rate, 100)  # too slow
    assert not recovered(clean[:-60] + [(t, p, ms, 503) for t, p, ms, _ in clean[-60:]], rate, 100)


def test_the_ramp_doubles_to_its_peak_and_the_timeline_counts_by_due_and_by_answer():
    assert ramp_rates({"start_rps": 50, "peak_rps": 300, "step_factor": 2}) == [50, 100, 200, 300]
    rows = timeline([(0.2, "p", 100.0, 200), (0.5, "p", 900.0, 200), (0.7, "p", 1.0, 503)], start=0.0)
    assert rows[0]["offered_rps"] == 3 and rows[0]["answered_rps"] == 1 and rows[0]["refused_rps"] == 1
    assert rows[1]["offered_rps"] == 0 and rows[1]["answered_rps"] == 1  # the slow answer came in second 1


def test_a_status_an_api_sets_through_its_context_is_an_answer_not_an_error():
    """`ctx.response.status_code = 202` (BentoML's Context): 2xx answers, like 200."""
    overload = [(10.0 + i * 0.01, "overload", 5.0, 202 if i % 2 else 503) for i in range(1000)]
    m = _run(overload, _steady(20.0, 3, 45, 5.0, 202, phase="recovery"))["metrics"]
    assert m["server_errors"] == 0 and m["overload_answered_rps"] == 50.0 and m["recovery_s"] == 2.0


def test_the_overload_of_a_refusing_service_has_one_deadline_of_requests_in_flight():
    """A service that refuses gets rate x deadline connections (its admission control sees a full
    deadline of backlog; no connection is opened during the overload); one whose saturated step
    refused nothing gets at most MAX_IN_FLIGHT (opening one per queued request took the
    generator's CPU)."""
    from shipyard.harness.open_loop import MAX_CONNECTIONS
    from shipyard.harness.staged.stress.__main__ import MAX_IN_FLIGHT, overload_connections

    assert overload_connections(Step(2560, 233.0, 0.0, 6500.0, CALM), 700.0, 100.0) == MAX_IN_FLIGHT
    assert overload_connections(Step(6400, 6224.0, 0.024, 10.0, CALM), 18_000.0, 100.0) == 1800
    assert overload_connections(Step(6400, 6224.0, 0.024, 10.0, CALM), 300.0, 100.0) == 64
    assert overload_connections(Step(6400, 6224.0, 0.024, 10.0, CALM), 200_000.0, 100.0) == MAX_CONNECTIONS
