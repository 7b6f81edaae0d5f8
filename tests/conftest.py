"""Shared fixtures. Every test session gets its own state folder (model store, Bentos, servers),
so tests never touch a developer's .shipyard/ and CI starts from nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports bentoml: it reads BENTOML_HOME once, at import.
_SESSION_STATE = Path(tempfile.mkdtemp(prefix="shipyard-test-"))
os.environ["SHIPYARD_STATE"] = str(_SESSION_STATE)
os.environ["BENTOML_HOME"] = str(_SESSION_STATE / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_ROWS = 20_000

VALID_TRANSACTION = {
    "transaction_id": "tx-1",
    "amount": 42.5,
    "currency": "EUR",
    "merchant_category": "5411",
    "country": "DE",
    "hour": 14,
    "card_present": True,
    "distance_from_home_km": 3.2,
    "transactions_last_24h": 2,
    "account_age_days": 800,
    "avg_amount_30d": 40.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    """The real `shipyard` command in a subprocess, as a user runs it (from the project's root)."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        cwd=cwd, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=timeout,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's state folder goes with a session that passed; one that failed keeps it (the
    servers' logs, the Bentos, the records) for whoever reads why."""
    if exitstatus == 0:
        import shutil

        shutil.rmtree(_SESSION_STATE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README walkthrough first (its first half needs no cluster), the tests that need the local
    cluster last (the sort keeps every other order): `make test` brings the cluster up in the
    background meanwhile, and the first test that needs it waits for it."""
    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("walkthrough"):
            return 0
        return 2 if item.get_closest_marker("cluster") else 1

    items.sort(key=order)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _SESSION_STATE


@pytest.fixture(scope="session")
def trained_model(state_dir: Path) -> str:
    """A small real model in the session's store (20 000 rows: seconds, not minutes)."""
    from service.model import train_and_register

    return train_and_register(state_dir / "data", seed=7, rows=TEST_ROWS).tag
