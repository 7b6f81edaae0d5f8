"""What the verdict says about the autoscaler, from the sampled rows."""

from __future__ import annotations

from shipyard.targets.scale import ScaleWatch


def watch_with(rows: list[dict]) -> ScaleWatch:
    watch = ScaleWatch("ns", "api")
    watch.rows = rows
    return watch


def test_scale_out_is_the_first_sample_with_more_ready_pods_than_at_the_start():
    rows = [{"t": 0.0, "ready": 1}, {"t": 2.0, "ready": 1}, {"t": 31.5, "ready": 2}, {"t": 33.5, "ready": 2}]
    assert watch_with(rows).metrics() == {"replicas_start": 1, "replicas_max": 2, "scale_out_s": 31.5}


def test_never_scaling_out_is_no_data_for_scale_out():
    assert watch_with([{"t": 0.0, "ready": 2}, {"t": 2.0, "ready": 2}]).metrics()["scale_out_s"] is None
    assert watch_with([]).metrics() == {"replicas_start": None, "replicas_max": None, "scale_out_s": None}
