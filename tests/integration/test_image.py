"""Images with real docker and a real registry: build, push, pull by digest, run hardened."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest

from shipyard.image import registry_digest
from tests.conftest import VALID_TRANSACTION, free_port, run_cli
from tests.integration.conftest import wait_ready

pytestmark = pytest.mark.docker


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def running(built_image):
    """The image pulled by digest and run as docker would in production: read-only, non-root, loopback."""
    docker("image", "rm", built_image.tag, check=False)
    docker("pull", built_image.reference)
    port = free_port()
    cid = docker("run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                 "--security-opt", "no-new-privileges", "-p", f"127.0.0.1:{port}:3000",
                 built_image.reference).stdout.strip()
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield cid, f"http://127.0.0.1:{port}"
    except AssertionError:
        print(docker("logs", cid, check=False).stdout[-3000:])
        raise
    finally:
        docker("rm", "-f", cid, check=False)


def test_printed_digest_is_the_registrys(built_image):
    registry, rest = built_image.reference.split("/", 1)
    repository, digest = rest.split("@")
    version = built_image.tag.rsplit(":", 1)[1]
    assert registry_digest(registry, repository, version) == digest


def test_image_list_shows_bento_model_and_digest(built_image, built_bento, cli_env):
    table = run_cli("image", "list", env=cli_env).stdout
    assert built_bento in table and built_image.reference in table and "fraud_detector:" in table


def test_runs_read_only_as_non_root_and_answers(running):
    cid, url = running
    uid = docker("exec", cid, "id", "-u").stdout.strip()
    assert uid != "0"
    ok = httpx.post(f"{url}/score", json=VALID_TRANSACTION, timeout=30)
    assert ok.status_code == 200 and ok.json()["transaction_id"] == "tx-1"
    bad = httpx.post(f"{url}/score", json={**VALID_TRANSACTION, "hour": 99}, timeout=30)
    assert bad.status_code == 400 and bad.json()["fields"][0]["field"] == "hour"
    assert docker("exec", cid, "touch", "/opt/probe", check=False).returncode != 0  # really read-only


def test_the_serving_image_holds_only_what_the_server_imports(built_image):
    assert built_image.jobs_reference.split("@")[0].endswith("/fraud-scorer-jobs")
    assert built_image.size_bytes <= 300e6, f"serving image is {built_image.size_bytes / 1e6:.0f} MB"
    missing = docker("run", "--rm", "--entrypoint", "python", built_image.reference, "-c",
                     "import importlib.util as u; print([m for m in ('sklearn', 'scipy', 'pandas', 'pyarrow', 'redis')"
                     " if u.find_spec(m)])").stdout.strip()
    assert missing == "[]", f"the serving image carries {missing}"


def test_the_jobs_image_runs_batch_and_stream(built_image):
    result = docker("run", "--rm", "-w", "/home/bentoml/bento/src", "--entrypoint", "python",
                    built_image.jobs_reference, "-c", "import service.batch, service.stream, sklearn, pyarrow; print('ok')",
                    check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_serves_with_shipyards_server_as_pods_do(running):
    cid, _ = running
    command = docker("exec", cid, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert command[:4] == ["python", "-m", "shipyard_serving.server", "/home/bentoml/bento"], command


def _host_ca_fingerprints() -> list[bytes]:
    """DER bodies of the certificates this machine adds to Debian's bundle."""
    bodies = []
    for pem in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        text = pem.read_text()
        for block in text.split("-----BEGIN CERTIFICATE-----")[1:]:
            b64 = "".join(block.split("-----END CERTIFICATE-----")[0].split())
            bodies.append(base64.b64decode(b64)[:64])
    return bodies


def test_image_holds_no_host_ca_certificate(running):
    cid, _ = running
    fingerprints = _host_ca_fingerprints()
    pem_lines = {base64.b64encode(f)[:40] for f in fingerprints}
    exported = subprocess.run(["docker", "export", cid], capture_output=True, check=True, timeout=600).stdout
    offenders = []
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar:
            if not member.isfile() or member.size > 50_000_000:
                continue
            data = tar.extractfile(member).read()
            if any(f in data for f in fingerprints) or any(p in data for p in pem_lines):
                offenders.append(member.name)
    assert offenders == []


def test_unknown_bento_is_a_clear_error(cli_env):
    result = run_cli("image", "build", "--bento", "fraud_scorer:nosuchversion", env=cli_env)
    assert result.returncode == 1 and "run `shipyard build` first" in result.stderr


def test_registry_down_fails_cleanly_and_records_nothing(built_bento, cli_env):
    before = run_cli("image", "list", "-o", "json", env=cli_env).stdout
    result = run_cli("image", "build", "--registry", f"127.0.0.1:{free_port()}", env=cli_env)
    assert result.returncode == 1 and "is not answering" in result.stderr and "scripts/image/up" in result.stderr
    assert run_cli("image", "list", "-o", "json", env=cli_env).stdout == before


def test_docker_not_running_fails_cleanly(built_bento, cli_env, tmp_path):
    # The engine is shared by the session; an engine that cannot be reached is the same failure.
    env = {**cli_env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = run_cli("image", "build", env=env)
    assert result.returncode == 1 and "docker engine is not running" in result.stderr
