"""A model that answers wrongly is caught by output validation: a clear 5xx and a metric."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from shipyard.targets import wait_until_ready
from tests.conftest import PROJECT_ROOT, VALID_TRANSACTION, free_port
from tests.integration.broken_models import contract_breaking_onnx

pytestmark = pytest.mark.server


@pytest.fixture(scope="module", params=["shipyard_serving.server", "bentoml serve"])
def broken_server(state_dir, request):
    """The broken model behind shipyard's server (how pods serve) and behind `bentoml serve`."""
    import bentoml

    from service.edge import ONNX_FILE

    with bentoml.models.create("fraud_detector_broken", metadata={"threshold": 0.5}) as ref:
        with open(ref.path_of(ONNX_FILE), "wb") as f:
            f.write(contract_breaking_onnx(str(ref.tag)))
    port = free_port()
    env = dict(os.environ, SHIPYARD_MODEL=str(ref.tag), PYTHONPATH=str(PROJECT_ROOT))
    log = open(state_dir / "broken-server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", *request.param.split(), "tests.integration.served_scorer:FraudScorer", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # The bound catches a hang; it is not a performance assertion.
        if not wait_until_ready(url, 90, alive=lambda: proc.poll() is None):
            pytest.fail("broken-model server never became ready:\n"
                        + (state_dir / "broken-server.log").read_text()[-3000:])
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.parametrize("amount,reason", [(111.0, "not_finite"), (222.0, "out_of_range"), (333.0, "shape")])
def test_contract_breaking_output_is_a_stable_500(broken_server, amount, reason):
    resp = broken_server.post("/score", json={**VALID_TRANSACTION, "amount": amount})
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "output_validation_failed",
        "message": f"the model's answer broke the output contract ({reason})",
    }
    metrics = broken_server.get("/metrics").text
    assert f'shipyard_output_validation_failures_total{{reason="{reason}"}}' in metrics


def test_one_bad_row_fails_the_whole_list_rather_than_answering_wrongly(broken_server):
    resp = broken_server.post("/score_batch", json=[VALID_TRANSACTION, {**VALID_TRANSACTION, "amount": 111.0}])
    assert resp.status_code == 500 and resp.json()["error"] == "output_validation_failed"


def test_valid_output_still_served(broken_server):
    resp = broken_server.post("/score", json=VALID_TRANSACTION)
    assert resp.status_code == 200 and resp.json()["probability"] == pytest.approx(0.1)
