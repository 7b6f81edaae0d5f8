"""The staged suites run against a deployed environment, never an in-process one.

Testers run them directly:  SHIPYARD_TARGET_URL=http://127.0.0.1:3001 pytest tests/staged/smoke
`shipyard verify` runs the same files and reads SHIPYARD_SUITE_METRICS for the measured values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

VALID = {
    "transaction_id": "staged-1", "amount": 42.5, "currency": "EUR", "merchant_category": "5411",
    "country": "DE", "hour": 14, "card_present": True, "distance_from_home_km": 3.2,
    "transactions_last_24h": 2, "account_age_days": 800, "avg_amount_30d": 40.0,
}
_METRICS: dict[str, float | None] = {}


def setting(name: str, default: str) -> str:
    """A suite setting from environment.yaml, passed by the harness as SHIPYARD_SUITE_<NAME>."""
    return os.environ.get(f"SHIPYARD_SUITE_{name.upper()}", default)


@pytest.fixture(scope="session")
def url() -> str:
    value = os.environ.get("SHIPYARD_TARGET_URL")
    if not value:
        pytest.exit("set SHIPYARD_TARGET_URL to the environment's URL (shipyard status shows it)", returncode=2)
    return value.rstrip("/")


@pytest.fixture(scope="session")
def client(url):
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def record():
    """record(name, value): a measured value the harness's gates can judge."""
    return _METRICS.__setitem__


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("SHIPYARD_SUITE_METRICS")
    if path and _METRICS:
        Path(path).write_text(json.dumps(_METRICS))
