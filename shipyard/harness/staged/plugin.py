"""The pytest plugin every staged pytest suite runs with (built-in and the project's own):
`url`, `client`, `record` and `setting`. Testers run a suite by hand the same way:

    SHIPYARD_TARGET_URL=http://127.0.0.1:3001 pytest -p shipyard.harness.staged.plugin tests/staged/acceptance

`record(name, value)` writes a JUnit test-suite property: `shipyard verify` reads the properties of
the JUnit report and judges the environment's gates on them.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import httpx
import pytest


def setting(name: str, default: str) -> str:
    """A suite setting from environment.yaml (`suites.<suite>.<name>`), passed as SHIPYARD_SUITE_<NAME>."""
    return os.environ.get(f"SHIPYARD_SUITE_{name.upper()}", default)


@pytest.fixture(scope="session")
def url() -> str:
    value = os.environ.get("SHIPYARD_TARGET_URL")
    if not value:
        pytest.exit("set SHIPYARD_TARGET_URL to the environment's URL (shipyard status shows it)", returncode=2)
    return value.rstrip("/")


@pytest.fixture(scope="session")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def record(record_testsuite_property: Callable[[str, object], None]) -> Callable[[str, object], None]:
    """record(name, value): a measured value the environment's gates can judge (the last one counts)."""
    return record_testsuite_property


@pytest.fixture(scope="session")
def document(client: httpx.Client) -> dict:
    """The served OpenAPI document."""
    resp = client.get("/docs.json")
    assert resp.status_code == 200, f"GET /docs.json answered {resp.status_code}"
    return resp.json()
