"""The local target through the real CLI: deploy is idempotent, status tells the truth, stop stops."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.server


def _status(cli_env) -> dict:
    result = run_cli("status", "itest", "-o", "json", env=cli_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_status_reports_the_served_bento(served, built_bento):
    st = _status(served.cli_env)
    assert st["state"] == "ready" and st["bento"] == built_bento and st["url"] == served.url
    table = run_cli("status", env=served.cli_env).stdout
    assert table.splitlines()[0].split()[:3] == ["ENVIRONMENT", "TARGET", "STATE"]


def test_deploying_the_same_bento_again_changes_nothing(served, built_bento):
    before = _status(served.cli_env)["pid"]
    result = run_cli("deploy", "itest", "--bento", built_bento, env=served.cli_env)
    assert result.returncode == 0 and "already serves" in result.stderr
    assert _status(served.cli_env)["pid"] == before


def test_port_taken_by_someone_else_is_a_clear_error(served, environments):
    (environments / "clash").mkdir(exist_ok=True)
    port = served.url.rsplit(":", 1)[1]
    (environments / "clash" / "environment.yaml").write_text(f"name: clash\nlocal: {{port: {port}}}\n")
    result = run_cli("deploy", "clash", env=served.cli_env)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_malformed_environment_is_exit_2(served, environments):
    (environments / "broken").mkdir(exist_ok=True)
    (environments / "broken" / "environment.yaml").write_text("name: broken\nlocal: {port: 99999}\n")
    result = run_cli("deploy", "broken", env=served.cli_env)
    assert result.returncode == 2
    assert "local.port: Input should be less than or equal to 65535" in result.stderr


def test_stop_ends_the_server_and_every_worker(built_bento, cli_env, environments):
    from tests.conftest import free_port

    (environments / "shortlived").mkdir(exist_ok=True)
    (environments / "shortlived" / "environment.yaml").write_text(f"name: shortlived\nlocal: {{port: {free_port()}}}\n")
    assert run_cli("deploy", "shortlived", env=cli_env).returncode == 0
    st = json.loads(run_cli("status", "shortlived", "-o", "json", env=cli_env).stdout)[0]
    assert httpx.get(f"{st['url']}/livez").status_code == 200
    pgid = st["pid"]
    members = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(p) == pgid]
    assert members, "the server should be running in its own process group"
    result = run_cli("stop", "shortlived", env=cli_env)
    assert result.returncode == 0 and "stopped" in result.stdout
    assert [p for p in os.listdir("/proc") if p.isdigit() and _pgid(p) == pgid] == []
    assert json.loads(run_cli("status", "shortlived", "-o", "json", env=cli_env).stdout)[0]["state"] == "stopped"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{st['url']}/livez", timeout=2)


def _pgid(pid: str) -> int | None:
    """The process group of a live process (zombies hold nothing and count as gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[2])
    except (OSError, ValueError, IndexError):
        return None
