"""The stress suite's arithmetic on synthetic requests: answers and fast rejections apart,
connection failures counted, recovery found at the first clean window."""

from __future__ import annotations

from shipyard.harness.stress import Phases, summarize


def test_summary_separates_answers_from_fast_rejections_and_finds_recovery():
    phases = Phases(step_rps=[(8, 150.0), (24, 160.0)], saturation_users=8, overload_users=24,
                    overload_window=(10.0, 40.0), recovery_started=40.0)
    samples = [(11.0 + i * 0.01, "/score", 40.0 + i % 50, 200) for i in range(1000)]
    samples += [(11.0 + i * 0.01, "/score [rejected]", 2.0 + i % 10, 503) for i in range(2000)]
    samples += [(40.1, "/score", 300.0, 200), (41.0, "/score", 20.0, 503)]  # still hot just after
    samples += [(42.0 + i * 0.05, "/score", 30.0, 200) for i in range(100)]  # healthy from 42 s
    samples += [(20.0, "/score", 0.0, 0)]  # one connection failure
    m = summarize(samples, phases, p95_limit_ms=100)
    assert m["saturation_users"] == 8 and m["saturation_rps"] == 160.0 and m["overload_users"] == 24
    assert m["answered_p99_ms"] == 89.0 and m["rejection_p99_ms"] == 11.0
    assert m["server_errors"] == 1
    assert m["overload_rejected_share"] == 2000 / 3001
    assert m["recovery_s"] == 3.5  # the window [41.5, 43.5) is the first without the 503 at 41.0


def test_no_overload_phase_is_no_data_not_a_pass():
    m = summarize([(1.0, "/score", 10.0, 200)], Phases(), p95_limit_ms=100)
    assert m["answered_p99_ms"] is None and m["rejection_p99_ms"] is None and m["recovery_s"] is None


def test_a_saturation_the_generator_reached_first_says_so():
    phases = Phases(step_rps=[(4, 900.0), (12, 1900.0), (20, 1950.0)], step_cpu=[0.4, 0.97, 0.99])
    m = summarize([], phases, p95_limit_ms=100)
    assert m["generator_cpu_at_saturation"] == 0.99 and m["generator_bound"] is True
    assert [s["generator_cpu"] for s in m["steps"]] == [0.4, 0.97, 0.99]
    calm = summarize([], Phases(step_rps=[(4, 900.0), (12, 950.0)], step_cpu=[0.3, 0.35]), p95_limit_ms=100)
    assert calm["generator_cpu_at_saturation"] == 0.35 and calm["generator_bound"] is False
    # The ramp stopped at a step that answered a little less because locust ran out of CPU there.
    flat = summarize([], Phases(step_rps=[(4, 900.0), (12, 1900.0), (20, 1890.0)], step_cpu=[0.4, 0.8, 0.98]),
                     p95_limit_ms=100)
    assert flat["generator_cpu_at_saturation"] == 0.98 and flat["generator_bound"] is True


def test_bentomls_own_concurrency_limit_refuses_it_does_not_fail():
    """`traffic.max_concurrency` makes BentoML answer 429: a refusal, like admission's 503."""
    from shipyard.harness.stress import Phases, summarize

    phases = Phases(saturation_users=4, overload_users=12, overload_window=(10.0, 20.0), recovery_started=20.0)
    samples = [(10.0 + i * 0.01, "/predict", 5.0, 429 if i % 2 else 200) for i in range(500)]
    samples += [(21.0 + i * 0.01, "/predict", 5.0, 200) for i in range(300)]
    m = summarize(samples, phases, 250)
    assert m["server_errors"] == 0 and m["overload_rejected_share"] == 0.5
