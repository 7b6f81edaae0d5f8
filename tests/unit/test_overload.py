"""Admission without a server: a floor raised by a past overload cannot refuse for ever, and the
work admitted at once shrinks while the event loop's passes run long (so refusals stay fast)."""

from __future__ import annotations

import pytest

from shipyard_serving.overload import AdmissionState


def test_a_floor_above_the_deadline_is_measured_again_and_drops_with_a_fast_answer():
    state = AdmissionState()
    state.record(0.300)  # answers took 300 ms during an overload (a sync API's thread-pool queue)
    assert state.floor_s() == 0.300
    deadline = 0.100
    assert state.admits(deadline, now=10.0)  # nothing let in for long: one request re-measures
    assert not state.admits(deadline, now=10.2) and not state.admits(deadline, now=10.9)
    state.record(0.004)  # that request was answered fast: the overload is over
    assert state.floor_s() == 0.004
    assert state.admits(deadline, now=11.0) and state.admits(deadline, now=11.01)


def test_a_long_event_loop_queue_refuses_whatever_the_floor():
    state = AdmissionState()
    state.queue_delay_s = 0.050  # over a quarter of a 100 ms deadline
    assert not state.admits(0.100, now=100.0)


def test_each_route_has_its_own_floor():
    state = AdmissionState()
    for route, took in (("/score_batch", 0.008), ("/score", 0.00005)):  # a 1 000-row list, one row
        assert state.admits(1.0, now=5.0, route=route)
        state.record(took, route)
    assert not state.admits(0.001, now=5.1, route="/score_batch")  # 1 ms cannot fit a list that takes 8 ms
    assert state.admits(0.001, now=5.1, route="/score")


def test_admitted_work_beyond_the_budget_is_refused_until_some_of_it_is_done():
    state = AdmissionState()
    assert state.admits(0.100, now=1.0, route="/score")
    state.record(0.0004, "/score", ran_s=0.0003)  # one row runs 0.3 ms of late
    state.budget_s = 0.001  # the loop's passes ran long: 1 ms of admitted work at most
    assert all(state.admits(0.100, now=1.1, route="/score") for _ in range(3))  # 0.9 ms admitted
    assert not state.admits(0.100, now=1.1, route="/score")  # a fourth would make 1.2 ms
    state.record(0.0005, "/score", ran_s=0.0003)  # one of them is done
    assert state.admits(0.100, now=1.1, route="/score")


def test_with_nothing_in_flight_one_request_is_admitted_even_if_it_is_more_than_the_budget():
    state = AdmissionState()
    assert state.admits(1.0, now=1.0, route="/score_batch")
    state.record(0.007, "/score_batch", ran_s=0.006)  # a 1 000-row list runs 6 ms
    state.budget_s = 0.001
    assert state.admits(1.0, now=1.1, route="/score_batch")  # else the route could never be served
    assert not state.admits(1.0, now=1.1, route="/score_batch")


def _refuse_one(state: AdmissionState) -> None:
    state.queue_delay_s = 1.0  # refused whatever the budget: the probe counts it
    assert not state.admits(0.100, now=1.0)


def test_long_passes_while_refusing_shrink_the_budget_and_short_ones_let_it_grow_back():
    state = AdmissionState()
    full = state.budget_s
    for _ in range(3):
        state.observe_pass(0.020)  # long passes, nothing refused: 32 clients in a closed loop
    assert state.budget_s == full
    _refuse_one(state)
    state.observe_pass(0.010)  # a pass twice the target while refusing: a quarter of the budget stays
    assert abs(state.budget_s - full / 4) < 1e-12
    for _ in range(20):
        _refuse_one(state)
        state.observe_pass(0.040)
    assert state.budget_s > 0  # never shut: one request per pass still gets in
    for _ in range(1000):
        state.observe_pass(0.001)
    assert state.budget_s == full
    assert state.queue_delay_s == 0.001  # the sustained queue is the least of the last probes


def test_a_route_served_in_a_thread_pool_is_not_held_to_the_loops_budget():
    state = AdmissionState()
    state.loop_routes = {"/score"}  # /route is a sync API: its requests wait for a thread, not the loop
    for _ in range(2):
        assert state.admits(0.100, now=1.0, route="/route")
        state.record(0.040, "/route", ran_s=0.040)  # 40 ms of wall time, mostly waiting for the thread
    state.budget_s = 0.001
    assert all(state.admits(0.100, now=1.1, route="/route") for _ in range(10))
    assert state.admitted_work_s() == 0


def test_loop_time_counts_a_requests_steps_on_the_loop_not_its_awaits():
    """An async API that awaits a dependency for 50 ms costs the loop only its own steps."""
    import asyncio
    import time as clock

    from shipyard_serving.overload import LoopTime

    async def handler() -> str:
        started = clock.perf_counter()
        while clock.perf_counter() - started < 0.01:  # 10 ms of work on the loop
            pass
        await asyncio.sleep(0.05)  # 50 ms waiting for a dependency
        return "answer"

    async def main() -> tuple[str, float, float]:
        run, started = LoopTime(handler()), clock.perf_counter()
        answer = await run
        return answer, run.busy_s, clock.perf_counter() - started

    answer, busy_s, wall_s = asyncio.run(main())
    # At least the 10 ms of work; the 50 ms sleep (at least 50 ms on any machine) left out.
    assert answer == "answer" and busy_s >= 0.01 and wall_s - busy_s >= 0.05


def test_loop_time_passes_errors_and_cancellation_through():
    import asyncio

    from shipyard_serving.overload import LoopTime

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("the model failed")

    async def main() -> None:
        with pytest.raises(ValueError, match="the model failed"):
            await LoopTime(failing())
        task = asyncio.ensure_future(_wrapped(LoopTime(asyncio.sleep(30))))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def _wrapped(run: LoopTime) -> None:
        await run

    asyncio.run(main())


def test_a_longer_deadline_may_queue_behind_proportionally_more_admitted_work():
    """48 ms of admitted work is too much for a 100 ms deadline's budget, not for a 60 s one."""
    state = AdmissionState()
    assert state.admits(0.100, now=1.0, route="/classify")
    state.record(0.004, "/classify", ran_s=0.003)  # 3 ms on the loop each (two busy shared cores)
    admitted = [state.admits(0.100, now=1.1, route="/classify") for _ in range(16)]
    assert admitted.count(True) < 16  # the 100 ms deadline's 25 ms budget refuses some of 16 clients
    state = AdmissionState()
    assert state.admits(60.0, now=1.0, route="/classify")
    state.record(0.004, "/classify", ran_s=0.003)
    assert all(state.admits(60.0, now=1.1, route="/classify") for _ in range(16))


def test_a_deadline_is_at_most_the_services_traffic_timeout(monkeypatch):
    """A request still waiting at the service's traffic timeout gets its 504 whatever its caller
    would wait: admission judges it by the shorter of the two."""
    from shipyard_serving.overload import DeadlineMiddleware

    monkeypatch.setenv("SHIPYARD_DEADLINE_MS", "60000")
    capped = DeadlineMiddleware(None, ("/score",), timeout_s=10)
    assert capped.deadline_ms([]) == 10_000
    assert capped.deadline_ms([(b"x-deadline-ms", b"30000")]) == 10_000
    assert capped.deadline_ms([(b"x-deadline-ms", b"50")]) == 50
    assert capped.deadline_ms([(b"x-deadline-ms", b"70000")]) is None  # still outside the header's rule
    assert DeadlineMiddleware(None, ("/score",)).deadline_ms([]) == 60_000  # no timeout declared: no cap
