"""Overload against the real served Bento: work that cannot meet its deadline is refused fast
with 503 and Retry-After, the server keeps serving, and a bad deadline header is a clear 400."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from shipyard.paths import state_dir
from service.schemas import MAX_BATCH_ITEMS
from tests.conftest import VALID_TRANSACTION

pytestmark = pytest.mark.server


def test_a_deadline_the_server_cannot_meet_is_refused_with_retry_after(client):
    # One row is answered in well under the shortest deadline a header may ask for (0.1 ms); a list of
    # the most rows a request may carry is not, and that route's pace is what a deadline is held to.
    rows = [{**VALID_TRANSACTION, "transaction_id": f"t{i}"} for i in range(MAX_BATCH_ITEMS)]
    assert client.post("/score_batch", json=rows).status_code == 200  # the server knows the route's pace
    # At most one request a second is let through to measure the pace again (a floor must not
    # refuse for ever): on a slow machine the first may be that one.
    for _ in range(3):
        response = client.post("/score_batch", json=rows, headers={"X-Deadline-Ms": "0.1"})
        if response.status_code == 503:
            break
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["error"] == "overloaded" and "0.1 ms deadline" in body["message"]
    wanted = 'shipyard_overload_rejections_total{reason="deadline_too_short"}'
    for _ in range(20):  # the worker's metric files are read by /metrics: allow them a moment
        metrics = client.get("/metrics").text
        if wanted in metrics:
            break
        time.sleep(0.25)
    assert wanted in metrics, [line for line in metrics.splitlines() if line.startswith("shipyard_")]


@pytest.mark.parametrize("value", ["abc", "0", "0.05", "60001", "-5", "nan"])
def test_a_bad_deadline_header_names_the_header_and_the_rule(client, value):
    response = client.post("/score", json=VALID_TRANSACTION, headers={"X-Deadline-Ms": value})
    assert response.status_code == 400
    assert response.json()["fields"][0]["field"] == "X-Deadline-Ms"


def test_a_flood_gets_fast_refusals_and_the_server_recovers(served, client):
    """64 concurrent clients with a 2 ms deadline: the event loop's queue outgrows it at once."""

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served.url, timeout=30, limits=limits) as c:
            async def one() -> httpx.Response:
                return await c.post("/score", json=VALID_TRANSACTION, headers={"X-Deadline-Ms": "2"})
            return await asyncio.gather(*(one() for _ in range(1500)))

    try:
        responses = asyncio.run(flood())
    except httpx.TransportError as exc:  # a connection the server dropped: say what the server said
        log = state_dir() / "local" / served.env_name / "server.log"
        tail = log.read_text(errors="replace")[-4000:] if log.is_file() else "(no server log)"
        raise AssertionError(f"the server dropped a connection during the flood ({exc!r}); its log ends:\n{tail}")
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "64 clients at once should queue more than a quarter of a 2 ms deadline"
    assert all(r.headers.get("Retry-After", "").isdigit() for r in refused)
    # Refusing is not sticky: at the normal deadline the next request is answered.
    assert client.post("/score", json=VALID_TRANSACTION).status_code == 200
