"""The one builder of shipyard's pods and Jobs: every container meets the restricted profile, and
nothing is shared between objects (YAML would write a shared dict as anchors)."""

from __future__ import annotations

import yaml

from shipyard.podspec import container_security, job, pod_security


def test_every_container_of_a_job_is_restricted_and_runs_once():
    built = job("j", "ns", {"a": "b"}, [{"name": "one"}, {"name": "two"}], [], deadline_s=60, ttl_s=600, pods=2,
                terminationGracePeriodSeconds=10)
    spec = built["spec"]
    assert (spec["backoffLimit"], spec["completions"], spec["parallelism"], spec["activeDeadlineSeconds"]) == (0, 2, 2, 60)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and not pod["automountServiceAccountToken"]
    assert pod["securityContext"] == pod_security() and pod["terminationGracePeriodSeconds"] == 10
    assert all(c["securityContext"] == container_security() for c in pod["containers"])
    assert container_security()["capabilities"] == {"drop": ["ALL"]}


def test_objects_share_no_dict_so_yaml_writes_no_anchors():
    built = job("j", "ns", {"a": "b"}, [{"name": "one"}, {"name": "two"}], [], deadline_s=60, ttl_s=600)
    assert "&id" not in yaml.safe_dump(built) and "*id" not in yaml.safe_dump(built)


def test_fs_group_only_when_asked():
    assert "fsGroup" not in pod_security() and pod_security(fs_group=True)["fsGroup"] == 10001
