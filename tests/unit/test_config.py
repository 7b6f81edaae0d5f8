"""environment.yaml is validated with errors that name the key and the rule."""

from __future__ import annotations

import pytest

from shipyard.config import ConfigError, known_environments, load_environment


@pytest.fixture
def envs(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", str(tmp_path))
    return tmp_path


def write(envs, name, text):
    (envs / name).mkdir(exist_ok=True)
    (envs / name / "environment.yaml").write_text(text)


def test_project_environments_are_valid(monkeypatch):
    monkeypatch.delenv("SHIPYARD_ENVIRONMENTS", raising=False)
    assert {"staging", "production"} <= set(known_environments())
    for name in ("staging", "production"):
        env = load_environment(name)
        assert env.name == name and env.namespace.endswith(name)
    assert load_environment("staging").local.port != load_environment("production").local.port


def test_minimal_file_gets_defaults(envs):
    write(envs, "dev", "name: dev\n")
    env = load_environment("dev")
    assert env.target == "local" and env.local.port == 3000


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: dev\nlocal: {port: 80}\n", "local.port: Input should be greater than or equal to 1024"),
        ("name: dev\nlocal: {prot: 3000}\n", "local.prot: Extra inputs are not permitted"),
        ("name: dev\ntarget: cloud\n", "target: Input should be 'local' or 'kubernetes'"),
        ("name: dev\ntarget: kubernetes\n", "target kubernetes needs a namespace"),
        ("name: dev\ngates: {load: {p95_ms: {}}}\n", "a gate needs min, max or both"),
        ("name: dev\ngates: {soak: {p95_ms: {max: 1}}}\n", "gates.soak"),
        ("name: other\n", "name: is 'other' but the folder is 'dev'"),
        ("name: [dev\n", "not valid YAML"),
        ("- dev\n", "must be a mapping"),
        ("name: dev\npromotion: {to: prod, strategy: canary}\n", "strategy canary needs a `canary:` section"),
        ("name: dev\npromotion: {to: prod, strategy: blue}\n", "promotion.strategy: Input should be 'replace' or 'canary'"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [50, 25], gates: {requests: {min: 1}}}}\n",
         "steps must grow"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [100], gates: {requests: {min: 1}}}}\n",
         "promotion.canary.steps.0: Input should be less than or equal to 99"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10], gates: {error_rate: {max: 0.1}}}}\n",
         "gates need `requests: {min: N}`"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10], gates: {requests: {min: 1}, latency: {max: 1}}}}\n",
         "promotion.canary.gates.latency"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10], gates: {requests: {min: 1}, "
         "decision_rate_shift: {max: 0.1}}}}\n", "needs `decision: {metric, label, value}`"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10, 20, 30], pause_s: 600, gates: {requests: {min: 1}}}}\n",
         "exceed the 1200 s"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10, 20], pause_s: 300, max_wait_s: 400, "
         "gates: {requests: {min: 1}}}}\n", "2 steps of up to 300 . 400 s"),
        ("name: dev\npromotion: {to: prod, canary: {steps: [10], max_wait_s: -1, gates: {requests: {min: 1}}}}\n",
         "promotion.canary.max_wait_s: Input should be greater than or equal to 0"),
        ("name: dev\nsuites: {load: {workers: 0}}\n", "suites.load.workers must be a whole number from 1 to 32"),
        ("name: dev\nsuites: {stress: {start_users: 4}}\n", "suites.stress.start_users: not a stress setting; the stress "
                                                             "suite offers requests per second, open loop, and takes start_rps"),
        ("name: dev\nsuites: {stress: {step_factor: fast}}\n", "suites.stress.step_factor must be a number above 0"),
        ("name: dev\nsuites: {load: {workers: 1.5}}\n", "suites.load.workers must be a whole number"),
    ],
)
def test_invalid_files_name_key_and_rule(envs, text, expected):
    write(envs, "dev", text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        load_environment("dev")


def test_unknown_environment_lists_known_ones(envs):
    write(envs, "dev", "name: dev\n")
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'.*known: dev"):
        load_environment("qa")


def test_the_served_deadline_is_the_environments_deadline():
    """The pods read SHIPYARD_DEADLINE_MS; environment.yaml's deadline_ms is what the gates mean."""
    import yaml

    from shipyard.config import load_environment
    from tests.conftest import PROJECT_ROOT

    deployment = yaml.safe_load((PROJECT_ROOT / "k8s" / "base" / "deployment.yaml").read_text())
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("staging", "production"):
        assert float(env["SHIPYARD_DEADLINE_MS"]) == load_environment(name).deadline_ms, name


@pytest.mark.parametrize("text,expected", [
    ("name: dev\ngates: {acceptanse: {roc_auc: {min: 0.9}}}\n", "gates.acceptanse: unknown suite"),
    ("name: dev\nsuites: {lod: {users: 3}}\n", "suites.lod: unknown suite"),
    ("name: dev\npromotion: {to: prod, post_deploy_suites: [smok]}\n", "promotion.post_deploy_suites.smok: unknown suite"),
])
def test_a_suite_the_project_does_not_have_is_named_with_the_known_ones(envs, text, expected):
    write(envs, "dev", text)
    with pytest.raises(ConfigError) as info:
        load_environment("dev")
    assert expected in str(info.value)
    assert "smoke, integration, acceptance, contract, load, stress" in str(info.value)  # this project's suites
