"""Rendering rules that need no cluster: an autoscaled Deployment keeps the count its HPA chose."""

from __future__ import annotations

from shipyard.manifests import keep_autoscaled_replicas


def objects(replicas: int = 2, low: int = 2, high: int = 6) -> list[dict]:
    return [
        {"kind": "Deployment", "metadata": {"name": "api"}, "spec": {"replicas": replicas}},
        {"kind": "Deployment", "metadata": {"name": "worker"}, "spec": {"replicas": 1}},
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "api"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "minReplicas": low, "maxReplicas": high}},
    ]


def replicas(rendered: list[dict]) -> dict[str, int]:
    return {o["metadata"]["name"]: o["spec"]["replicas"] for o in rendered if o["kind"] == "Deployment"}


def test_a_running_autoscaled_deployment_keeps_its_count_and_others_take_the_manifests():
    assert replicas(keep_autoscaled_replicas(objects(), {"api": 5, "worker": 3})) == {"api": 5, "worker": 1}


def test_a_new_deployment_starts_at_the_manifests_count():
    assert replicas(keep_autoscaled_replicas(objects(), {})) == {"api": 2, "worker": 1}


def test_the_kept_count_is_clamped_to_the_autoscalers_bounds():
    assert replicas(keep_autoscaled_replicas(objects(low=3, high=4), {"api": 1}))["api"] == 3
    assert replicas(keep_autoscaled_replicas(objects(low=3, high=4), {"api": 9}))["api"] == 4


def test_the_input_is_not_changed():
    given = objects()
    keep_autoscaled_replicas(given, {"api": 5})
    assert given[0]["spec"]["replicas"] == 2
