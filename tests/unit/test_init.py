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
    with pytest.raises(InitError, match="no bentofile.yaml in .*BentoML project folder"):
        init_project(tmp_path)
