"""Admission without a server: a floor raised by a past overload cannot refuse for ever."""

from __future__ import annotations

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
