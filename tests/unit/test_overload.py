"""Admission without a server: a floor raised by a past overload cannot refuse for ever, the
work admitted is bounded by the wait it makes at the rate the loop gets through it, and it starts
in chunks (so refusals stay fast)."""

from __future__ import annotations

import pytest

from shipyard_serving.overload import AdmissionState


def test_a_drain_rate_measured_in_an_overload_is_forgotten_as_the_loop_idles():
    """After an overload the loop runs unchained passes (it waits for sockets between them): the
    low rate measured while refusals took the core must not go on refusing a light load."""
    state = AdmissionState()
    state.work_per_cpu, state.cpu_share, state.quota_cpus = 0.1, 0.5, 0.5
    state._last_tick = (10.0, 5.0)  # the overload's last measured pass
    state.tick(10.5, 5.01)  # half a second of light load: half forgotten
    assert abs(state.work_per_cpu - 0.55) < 1e-9
    state.tick(12.0, 5.02)
    assert state.work_per_cpu == 1.0 and state.drain_rate == 0.5  # the quota still caps it


def _warm(state: AdmissionState, route: str) -> None:
    """A route's first run, which is not counted as its cost (a cold model call)."""
    state.record(0.05, route, ran_s=0.01)


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


def test_admitted_work_is_refused_once_its_wait_would_pass_a_quarter_of_the_deadline():
    """The wait is the work admitted ahead over the rate the loop gets through it: at half a core
    (a 0.5 CPU quota), 32 clients of 0.2 ms each wait 13 ms of a 100 ms deadline and are admitted;
    the queue stops at 25 ms of wait."""
    state = AdmissionState()
    assert state.admits(0.100, now=1.0, route="/score")
    _warm(state, "/score")
    state.record(0.0004, "/score", ran_s=0.0002)  # one row runs 0.2 ms on the loop
    state.drain_rate = 0.5  # the loop got through half a second of that work per second
    admitted = [state.admits(0.100, now=1.1, route="/score") for _ in range(100)]
    assert all(admitted[:31])  # a closed loop of 32 clients, the first one included
    # 62 ahead wait 24.8 ms (+ its own 0.2 ms run): the 63rd is the last in, then none.
    assert admitted.count(True) == 62 and not any(admitted[62:])
    assert abs(state.wait_s() - 63 * 0.0002 / 0.5) < 1e-9


def test_with_nothing_admitted_ahead_one_request_is_admitted_even_if_it_runs_past_the_wait():
    state = AdmissionState()
    state._work["/score_batch"] = [0.0, 0.400, 1.0]  # a huge list runs 400 ms; none admitted yet
    assert state.admits(1.0, now=1.1, route="/score_batch")  # else the route could never be served
    assert not state.admits(1.0, now=1.1, route="/score_batch")


def test_admitted_work_starts_in_chunks_and_the_drain_rate_counts_time_the_loop_did_not_run():
    """The loop starts at most CHUNK_S of admitted work a pass (so sockets, and refusals, are read
    between chunks), in arrival order; the rate is what it got through per second of wall time
    while work waited, stopped time included (a CFS quota's throttling is a slower loop)."""
    import asyncio

    from shipyard_serving.overload import CHUNK_S

    state = AdmissionState()
    state.admits(0.100, now=1.0, route="/score")
    _warm(state, "/score")
    state.record(0.0005, "/score", ran_s=0.0005)  # 0.5 ms a request
    state._work["/score"][0] = state._pending = 0
    started: list[int] = []

    async def request(i: int) -> None:
        assert state.admits(10.0, now=1.0, route="/score")
        if not state.may_start("/score"):
            await state.turn("/score")
        started.append(i)

    async def main() -> None:
        tasks = [asyncio.ensure_future(request(i)) for i in range(240)]
        await asyncio.sleep(0)  # every request has arrived: the first chunk started, the rest wait
        per_chunk = round(CHUNK_S / 0.0005)
        assert started == list(range(per_chunk))
        assert abs(state.admitted_work_s() - (240 - per_chunk) * 0.0005) < 1e-9
        # Busy passes of 5 ms wall, 2.5 ms of them the thread's CPU (a 0.5 CPU quota), each
        # starting CHUNK_S of admitted work: the loop gets through CHUNK_S per 5 ms.
        state._chained = False
        for k in range(110):
            state.tick(100.0 + 0.005 * k, 50.0 + 0.0025 * k)
            state._chained = True
        assert abs(state.cpu_share - 0.5) < 0.02  # averaged over five 100 ms windows
        assert abs(state.drain_rate - CHUNK_S / 0.005) < 0.01
        await asyncio.gather(*tasks)
        assert started == list(range(240))  # first come, first served

    asyncio.run(main())


def test_a_routes_first_run_is_not_its_cost_and_later_runs_are_averaged():
    state = AdmissionState()
    state.admits(0.100, now=1.0, route="/score")
    state.record(0.05, "/score", ran_s=0.010)  # the model's first call: 10 ms
    assert state._work["/score"][1] == 0  # not known yet: a fresh server's first burst is let in
    for ran_s in (0.0002, 0.0004):
        state.record(0.001, "/score", ran_s=ran_s)
    assert abs(state._work["/score"][1] - 0.0003) < 1e-12
    for _ in range(500):
        state.record(0.001, "/score", ran_s=0.0002)
    assert abs(state._work["/score"][1] - 0.0002) < 1e-6


def test_a_step_during_which_the_thread_did_not_run_counts_its_work_not_the_stop():
    """Under a quota the thread is stopped mid-step for up to 50 ms: a 0.2 ms request must not
    be counted as 50 ms of work (a blocking sleep stands in for the stop: the thread holds no CPU)."""
    import asyncio
    import time as clock

    from shipyard_serving.overload import LoopTime

    async def handler() -> None:
        clock.sleep(0.05)

    run = LoopTime(handler())
    asyncio.run(_awaited(run))
    assert run.busy_s < 0.01


async def _awaited(run: object) -> None:
    await run  # type: ignore[misc]


def test_a_route_served_in_a_thread_pool_is_not_held_to_the_loops_queue():
    state = AdmissionState()
    state.loop_routes = {"/score"}  # /route is a sync API: its requests wait for a thread, not the loop
    for _ in range(2):
        assert state.admits(0.100, now=1.0, route="/route")
        state.record(0.040, "/route", ran_s=0.040)  # 40 ms of wall time, mostly waiting for the thread
    assert all(state.admits(0.100, now=1.1, route="/route") for _ in range(100))
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
    """48 ms of admitted work is too much for a 100 ms deadline's wait, not for a 60 s one."""
    state = AdmissionState()
    assert state.admits(0.100, now=1.0, route="/classify")
    _warm(state, "/classify")
    state.record(0.004, "/classify", ran_s=0.003)  # 3 ms on the loop each (two busy shared cores)
    admitted = [state.admits(0.100, now=1.1, route="/classify") for _ in range(16)]
    assert admitted.count(True) < 16  # the 100 ms deadline's 25 ms wait refuses some of 16 clients
    state = AdmissionState()
    assert state.admits(60.0, now=1.0, route="/classify")
    _warm(state, "/classify")
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
