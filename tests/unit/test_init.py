"""`shipyard init` without servers: what it writes for a Bento, and what it refuses."""

from __future__ import annotations

import pytest
import yaml

from shipyard.init import InitError, init_project
from shipyard.project import read_project


def test_it_writes_a_valid_project_named_after_the_bento(tmp_path):
    (tmp_path / "bentofile.yaml").write_text("service: 'router.service:TicketRouter'\nname: ticket_router\n")
    lines = init_project(tmp_path)
    project = read_project(tmp_path / "shipyard.yaml")
    assert project.bento_name == "ticket_router" and project.kubernetes.workload == "ticket-router"
    staging = yaml.safe_load((tmp_path / "environments/staging/environment.yaml").read_text())
    assert staging["promotion"]["to"] == "production" and staging["gates"]["contract"]["contract_failures"] == {"max": 0}
    production = yaml.safe_load((tmp_path / "environments/production/environment.yaml").read_text())
    assert staging["local"]["port"] != production["local"]["port"]
    assert staging["namespace"] == "ticket-router-staging"
    assert "  shipyard verify staging" in lines


def test_it_refuses_to_overwrite_naming_what_exists(tmp_path):
    (tmp_path / "bentofile.yaml").write_text("service: 'app:Svc'\n")
    (tmp_path / "k8s" / "base").mkdir(parents=True)
    (tmp_path / "k8s" / "base" / "deployment.yaml").write_text("mine")
    with pytest.raises(InitError, match="not overwriting .*k8s/base/deployment.yaml"):
        init_project(tmp_path)
    assert (tmp_path / "k8s" / "base" / "deployment.yaml").read_text() == "mine"
    assert not (tmp_path / "shipyard.yaml").exists()


def test_it_needs_a_bentoml_project(tmp_path):
    with pytest.raises(InitError, match=r"no bentofile.yaml \(nor a pyproject.toml with \[tool.bentoml.build\]\) in .*BentoML project folder"):
        init_project(tmp_path)


SERVICE_SOURCE = '''
import bentoml
from bentoml import api

@bentoml.service
class Svc:
    @bentoml.api(route="/first")
    def first(self, x: int) -> int:
        return x

    def helper(self) -> None: ...

    @api
    async def second(self, y: str) -> str:
        return y
'''


def test_the_batch_template_sends_rows_to_the_services_first_api_read_from_its_source(tmp_path):
    (tmp_path / "bentofile.yaml").write_text("service: 'app.main:Svc'\nname: svc\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text(SERVICE_SOURCE)
    init_project(tmp_path)
    project = read_project(tmp_path / "shipyard.yaml")
    assert project.kubernetes.batch_cronjob == "svc-batch"
    text = (tmp_path / "k8s/base/batch-cronjob.yaml").read_text()
    cronjob = yaml.safe_load(text)
    job = cronjob["spec"]["jobTemplate"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "shipyard_serving.batch", "--api", "first"]
    assert "the service's APIs: first, second" in text and "&id" not in text
    assert job["completionMode"] == "Indexed" and job["backoffLimitPerIndex"] >= 1
    claim = yaml.safe_load((tmp_path / "k8s/base/batch-data.yaml").read_text())
    assert job["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    kustomization = yaml.safe_load((tmp_path / "k8s/base/kustomization.yaml").read_text())
    assert {"batch-data.yaml", "batch-cronjob.yaml"} <= set(kustomization["resources"])


def test_without_readable_source_the_template_asks_for_the_api(tmp_path):
    (tmp_path / "bentofile.yaml").write_text("service: 'missing:Svc'\n")
    init_project(tmp_path)
    text = (tmp_path / "k8s/base/batch-cronjob.yaml").read_text()
    assert "Name the API rows go to with --api" in text
    assert yaml.safe_load(text)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["python", "-m", "shipyard_serving.batch"]
