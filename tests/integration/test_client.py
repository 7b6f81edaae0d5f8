"""The typed client against the real served Bento, and against a real loopback HTTP server
scripted to fail in the ways the service cannot be made to (503 with Retry-After, slowness)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.client import (AsyncFraudClient, DeadlineExceeded, FraudClient, RequestRejected, ServerFailed,
                            Unavailable)
from tests.conftest import PROJECT_ROOT, VALID_TRANSACTION, free_port

pytestmark = pytest.mark.server
SCORE = {"transaction_id": "tx-1", "probability": 0.1, "decision": "legitimate", "threshold": 0.5,
         "model_version": "fraud_detector:stub"}


class Script:
    """A loopback server answering from a script of (status, headers, body, delay_s)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict, dict, float]] = []
        self.seen: list[float] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("content-length", 0)))
                script.seen.append(time.monotonic())
                status, headers, body, delay = script.answers.pop(0) if script.answers else (200, {}, SCORE, 0)
                time.sleep(delay)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def script():
    s = Script()
    yield s
    s.server.shutdown()


def test_scores_against_the_served_bento(served):
    with FraudClient(served.url, deadline_s=10) as client:
        one = client.score(VALID_TRANSACTION)
        many = client.score_many([VALID_TRANSACTION, {**VALID_TRANSACTION, "transaction_id": "tx-2"}])
    assert one.transaction_id == "tx-1" and [s.transaction_id for s in many] == ["tx-1", "tx-2"]
    assert many[0] == one


def test_async_client_scores_concurrently(served):
    async def run():
        async with AsyncFraudClient(served.url, deadline_s=10) as client:
            return await asyncio.gather(*(client.score({**VALID_TRANSACTION, "transaction_id": f"a{i}"}) for i in range(8)))

    assert sorted(s.transaction_id for s in asyncio.run(run())) == [f"a{i}" for i in range(8)]


def test_server_rejections_become_typed_errors_with_the_fields(served):
    with FraudClient(served.url, deadline_s=10) as client:
        with pytest.raises(RequestRejected) as info:
            client.score_many([])
    assert info.value.status == 400 and info.value.code == "validation_error"
    assert [(f.field, f.rule) for f in info.value.fields] == [("body", "too_short")]


def test_invalid_input_is_refused_before_it_is_sent(script):
    from pydantic import ValidationError

    with FraudClient(script.url) as client, pytest.raises(ValidationError):
        client.score({**VALID_TRANSACTION, "hour": 24})
    assert script.seen == []


def test_503_with_retry_after_is_retried_after_the_wait(script):
    script.answers = [(503, {"retry-after": "0.2"}, {"error": "overloaded", "message": "later"}, 0)]
    with FraudClient(script.url, deadline_s=5, retries=2) as client:
        assert client.score(VALID_TRANSACTION).model_version == "fraud_detector:stub"
    assert len(script.seen) == 2 and script.seen[1] - script.seen[0] >= 0.2


def test_4xx_is_never_retried(script):
    script.answers = [(400, {}, {"error": "validation_error", "message": "1 invalid field",
                                 "fields": [{"field": "amount", "rule": "greater_than", "message": "x"}]}, 0)]
    with FraudClient(script.url, retries=3) as client, pytest.raises(RequestRejected) as info:
        client.score(VALID_TRANSACTION)
    assert len(script.seen) == 1 and info.value.fields[0].field == "amount"


def test_server_failure_is_typed_and_not_retried(script):
    script.answers = [(500, {}, {"error": "output_validation_failed", "message": "broke the contract"}, 0)]
    with FraudClient(script.url, retries=3) as client, pytest.raises(ServerFailed) as info:
        client.score(VALID_TRANSACTION)
    assert info.value.code == "output_validation_failed" and len(script.seen) == 1


def test_persistent_503_ends_unavailable_after_the_retries(script):
    script.answers = [(503, {"retry-after": "0"}, {"error": "overloaded"}, 0)] * 3
    with FraudClient(script.url, retries=2, deadline_s=5) as client, pytest.raises(Unavailable):
        client.score(VALID_TRANSACTION)
    assert len(script.seen) == 3


def test_connection_errors_are_retried_then_unavailable():
    with FraudClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, deadline_s=5) as client:
        with pytest.raises(Unavailable):
            client.score(VALID_TRANSACTION)


def test_the_deadline_is_respected(script):
    script.answers = [(200, {}, SCORE, 3.0)]
    with FraudClient(script.url, deadline_s=0.3) as client, pytest.raises(DeadlineExceeded):
        client.score(VALID_TRANSACTION)


def test_the_example_runs_against_the_local_target(served):
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "examples" / "score_transactions.py"),
                             "--url", served.url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("example-1: legitimate") and lines[2].startswith("example-3: fraud")
    assert "an empty list is refused" in lines[3]
