"""The stream worker against a real Redis (scripts/redis/up): every input id ends as exactly one
score or one dead letter, also when a worker is killed with SIGKILL mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import PROJECT_ROOT, VALID_TRANSACTION

from tests.integration.conftest import REDIS_URL


@pytest.fixture
def streams(redis_up):
    """Stream names of this test alone, deleted afterwards."""
    from service.stream import StreamSettings

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = StreamSettings(redis_url=REDIS_URL, input_stream=f"{prefix}:in", output_stream=f"{prefix}:out",
                              dead_letter_stream=f"{prefix}:dead", consumer="c1", batch_size=64, block_ms=100,
                              claim_idle_ms=300)
    yield settings
    redis_up.delete(settings.input_stream, settings.output_stream, settings.dead_letter_stream, settings.seen_key)


def publish(client, stream: str, payloads: list[str]) -> list[str]:
    pipe = client.pipeline()
    for data in payloads:
        pipe.xadd(stream, {"data": data})
    return pipe.execute()


def outcomes(client, settings) -> dict[str, list[dict]]:
    """input id -> every entry written for it, on either stream."""
    found: dict[str, list[dict]] = {}
    for stream in (settings.output_stream, settings.dead_letter_stream):
        for _, fields in client.xrange(stream):
            found.setdefault(fields["input_id"], []).append({"stream": stream, **fields})
    return found


def test_scores_and_dead_letters_with_reasons(trained_model, streams, redis_up):
    from service.model import load_from_store
    from service.stream import Worker

    model = load_from_store(trained_model)
    ids = publish(redis_up, streams.input_stream, [
        json.dumps(VALID_TRANSACTION), json.dumps({**VALID_TRANSACTION, "hour": 24}), "not json", "[1]",
        json.dumps({**VALID_TRANSACTION, "transaction_id": "tx-2", "amount": 900.0, "card_present": False})])
    worker = Worker(streams, model.pipeline, model.threshold, model.tag)
    assert worker.run(max_idle_s=0.5) == 5
    found = outcomes(redis_up, streams)
    assert sorted(found) == sorted(ids) and all(len(v) == 1 for v in found.values())
    score = json.loads(found[ids[0]][0]["score"])
    assert score["transaction_id"] == "tx-1" and score["model_version"] == model.tag
    assert json.loads(found[ids[1]][0]["reason"])["rule"] == "less_than_equal"
    assert json.loads(found[ids[2]][0]["reason"])["rule"] == "json_invalid"
    assert json.loads(found[ids[3]][0]["reason"])["message"] == "not a JSON object"
    assert worker.lag() == (0, 0)


def test_a_message_processed_twice_is_written_once(trained_model, streams, redis_up):
    """Two workers finishing the same batch (a slow one and the one that claimed its messages)."""
    from service.model import load_from_store
    from service.stream import Worker

    model = load_from_store(trained_model)
    publish(redis_up, streams.input_stream, [json.dumps(VALID_TRANSACTION)] * 3)
    worker = Worker(streams, model.pipeline, model.threshold, model.tag)
    worker.ensure_group()
    messages = worker._read()
    first, second = worker.process(messages), worker.process(messages)
    assert (first.written, second.written) == (3, 0)
    assert redis_up.xlen(streams.output_stream) == 3


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(trained_model, streams, redis_up):
    rows = []
    for i in range(3000):
        tx = {**VALID_TRANSACTION, "transaction_id": f"k-{i}", "amount": 10.0 + i}
        rows.append(json.dumps({**tx, "hour": 99}) if i % 40 == 0 else json.dumps(tx))
    ids = publish(redis_up, streams.input_stream, rows)

    def worker(consumer: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "service.stream", "--redis", REDIS_URL, "--model", trained_model,
             "--input-stream", streams.input_stream, "--output-stream", streams.output_stream,
             "--dead-letter-stream", streams.dead_letter_stream, "--consumer", consumer, "--batch-size", "50",
             "--claim-idle-ms", "500", "--metrics-port", "0", *extra],
            cwd=PROJECT_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = worker("doomed")
    deadline = time.monotonic() + 120
    while redis_up.xlen(streams.output_stream) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert 0 < len(outcomes(redis_up, streams)) < len(ids), "the kill should land mid-stream"
    second = worker("survivor", "--max-idle-s", "3")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    found = outcomes(redis_up, streams)
    assert sorted(found) == sorted(ids), "every input id has an outcome"
    assert all(len(v) == 1 for v in found.values()), "no input id has two"
    dead = {k for k, v in found.items() if v[0]["stream"] == streams.dead_letter_stream}
    assert dead == {ids[i] for i in range(0, 3000, 40)}
    assert redis_up.xpending(streams.input_stream, streams.group)["pending"] == 0


def test_lag_and_throughput_are_prometheus_metrics(trained_model, streams, redis_up):
    import httpx

    from tests.conftest import free_port

    publish(redis_up, streams.input_stream, [json.dumps(VALID_TRANSACTION)] * 20 + ["not json"])
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.stream", "--redis", REDIS_URL, "--model", trained_model,
         "--input-stream", streams.input_stream, "--output-stream", streams.output_stream,
         "--dead-letter-stream", streams.dead_letter_stream, "--metrics-port", str(port), "--max-idle-s", "30"],
        cwd=PROJECT_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # a bound against hangs
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                text = ""
            if 'shipyard_stream_messages_total{outcome="scored"} 20.0' in text:
                break
            time.sleep(0.2)
        assert 'shipyard_stream_messages_total{outcome="scored"} 20.0' in text
        assert 'shipyard_stream_messages_total{outcome="dead_letter"} 1.0' in text
        assert "shipyard_stream_lag_messages 0.0" in text and "shipyard_stream_batch_seconds_count" in text
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err


def _get(url: str):
    import httpx

    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def _wait_for(url: str, status: int, limit_s: float = 60) -> int | None:
    """Polls url until it answers `status`; returns the last status seen (the limit catches hangs)."""
    deadline, last = time.monotonic() + limit_s, None
    while time.monotonic() < deadline:
        resp = _get(url)
        last = resp.status_code if resp is not None else None
        if last == status:
            return last
        time.sleep(0.2)
    return last


def test_a_worker_that_cannot_reach_its_broker_is_alive_but_not_ready(trained_model, streams, redis_up):
    """Ready means "reaches the broker": /readyz is 503 against a port nobody listens on (metrics
    still answer, the worker keeps retrying), and 200 against the real Redis."""
    from tests.conftest import free_port

    nobody = f"redis://127.0.0.1:{free_port()}/0"
    workers = {}
    try:
        for name, url in (("cut_off", nobody), ("connected", REDIS_URL)):
            port = free_port()
            workers[name] = (port, subprocess.Popen(
                [sys.executable, "-m", "service.stream", "--redis", url, "--model", trained_model,
                 "--input-stream", streams.input_stream, "--output-stream", streams.output_stream,
                 "--dead-letter-stream", streams.dead_letter_stream, "--metrics-port", str(port)],
                cwd=PROJECT_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        cut_port, cut = workers["cut_off"]
        ok_port, _ = workers["connected"]
        assert _wait_for(f"http://127.0.0.1:{ok_port}/readyz", 200) == 200
        assert _wait_for(f"http://127.0.0.1:{cut_port}/metrics", 200) == 200
        assert _get(f"http://127.0.0.1:{cut_port}/readyz").status_code == 503
        assert "shipyard_stream_broker_connected 0.0" in _get(f"http://127.0.0.1:{cut_port}/metrics").text
        assert "shipyard_stream_broker_connected 1.0" in _get(f"http://127.0.0.1:{ok_port}/metrics").text
        assert cut.poll() is None, "a worker without its broker retries; it does not exit"
    finally:
        for _, proc in workers.values():
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
