"""The client side of the API: typed, with a deadline per call and retries only where they help.

Built on the same schema module as the server, so a client cannot send what the server would
reject for shape reasons without finding out before the request leaves. A late fraud score is
useless, so every call has a deadline covering all its attempts; only failures that another
attempt can fix are retried (connection errors, 503 with Retry-After), never a 4xx.

    with FraudClient("http://127.0.0.1:3001") as client:
        score = client.score({...})            # -> Score
        scores = client.score_many([...])      # -> list[Score], in order
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import httpx
from pydantic import TypeAdapter

from service.schemas import Score, Transaction

_SCORES = TypeAdapter(list[Score])
RETRYABLE_STATUS = 503


@dataclass(frozen=True)
class FieldProblem:
    field: str
    rule: str
    message: str = ""


class ScoringError(Exception):
    """Base of every client error."""


class RequestRejected(ScoringError):
    """The server refused the request (4xx): fix the input; retrying cannot help."""

    def __init__(self, status: int, code: str, message: str, fields: list[FieldProblem]) -> None:
        detail = "; ".join(f"{f.field}: {f.rule}" for f in fields)
        super().__init__(f"HTTP {status} {code}: {message}" + (f" ({detail})" if detail else ""))
        self.status, self.code, self.fields = status, code, fields


class ServerFailed(ScoringError):
    """The server failed (5xx other than a retryable 503), e.g. its output validation."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code = status, code


class Unavailable(ScoringError):
    """Every attempt met a connection error or a 503 within the deadline."""


class DeadlineExceeded(ScoringError):
    """No answer within the call's deadline."""


def _payload(tx: Transaction | Mapping[str, Any]) -> dict[str, Any]:
    model = tx if isinstance(tx, Transaction) else Transaction.model_validate(dict(tx))
    return model.model_dump(mode="json", exclude_none=True)


def _error(resp: httpx.Response) -> ScoringError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    code, message = str(body.get("error", "error")), str(body.get("message", resp.text[:200]))
    if 400 <= resp.status_code < 500:
        fields = [FieldProblem(f.get("field", ""), f.get("rule", ""), f.get("message", ""))
                  for f in body.get("fields", [])]
        return RequestRejected(resp.status_code, code, message, fields)
    return ServerFailed(resp.status_code, code, message)


def _retry_after(resp: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", default)))
    except ValueError:
        return default


class _Policy:
    """The retry and deadline rules, shared by the sync and async clients."""

    def __init__(self, deadline_s: float, retries: int, backoff_s: float) -> None:
        if deadline_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError("deadline_s must be > 0, retries and backoff_s >= 0")
        self.deadline_s, self.retries, self.backoff_s = deadline_s, retries, backoff_s

    def ends(self, deadline_s: float | None) -> float:
        return time.monotonic() + (deadline_s or self.deadline_s)

    def remaining(self, path: str, ends: float) -> float:
        left = ends - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no answer from {path} within the deadline")
        return left

    def after(self, path: str, attempt: int, ends: float, resp: httpx.Response | None = None,
              error: Exception | None = None) -> tuple[bool, Any]:
        """(True, body) when done; (False, seconds to wait) before a retry; raises otherwise."""
        if isinstance(error, httpx.TimeoutException):
            raise DeadlineExceeded(f"no answer from {path} within the deadline") from error
        if resp is not None:
            if resp.status_code < 400:
                return True, resp.json()
            error = _error(resp)
            if resp.status_code != RETRYABLE_STATUS:
                raise error
        backoff = self.backoff_s * 2 ** attempt
        wait = _retry_after(resp, backoff) if resp is not None else backoff
        if attempt >= self.retries or time.monotonic() + wait >= ends:
            raise Unavailable(f"{path}: {error}") from error
        return False, wait


class FraudClient:
    def __init__(self, base_url: str, deadline_s: float = 1.0, retries: int = 2, backoff_s: float = 0.05,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.policy = _Policy(deadline_s, retries, backoff_s)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport)

    def __enter__(self) -> "FraudClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def score(self, tx: Transaction | Mapping[str, Any], deadline_s: float | None = None) -> Score:
        return Score.model_validate(self._call("/score", _payload(tx), deadline_s))

    def score_many(self, txs: Iterable[Transaction | Mapping[str, Any]], deadline_s: float | None = None) -> list[Score]:
        return _SCORES.validate_python(self._call("/score_batch", [_payload(t) for t in txs], deadline_s))

    def _call(self, path: str, body: Any, deadline_s: float | None) -> Any:
        ends, attempt = self.policy.ends(deadline_s), 0
        while True:
            try:
                resp = self.http.post(path, json=body, timeout=self.policy.remaining(path, ends))
                done, value = self.policy.after(path, attempt, ends, resp=resp)
            except httpx.TransportError as exc:
                done, value = self.policy.after(path, attempt, ends, error=exc)
            if done:
                return value
            time.sleep(value)
            attempt += 1


class AsyncFraudClient:
    def __init__(self, base_url: str, deadline_s: float = 1.0, retries: int = 2, backoff_s: float = 0.05,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = _Policy(deadline_s, retries, backoff_s)
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), transport=transport)

    async def __aenter__(self) -> "AsyncFraudClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def score(self, tx: Transaction | Mapping[str, Any], deadline_s: float | None = None) -> Score:
        return Score.model_validate(await self._call("/score", _payload(tx), deadline_s))

    async def score_many(self, txs: Iterable[Transaction | Mapping[str, Any]], deadline_s: float | None = None) -> list[Score]:
        return _SCORES.validate_python(await self._call("/score_batch", [_payload(t) for t in txs], deadline_s))

    async def _call(self, path: str, body: Any, deadline_s: float | None) -> Any:
        ends, attempt = self.policy.ends(deadline_s), 0
        while True:
            try:
                resp = await self.http.post(path, json=body, timeout=self.policy.remaining(path, ends))
                done, value = self.policy.after(path, attempt, ends, resp=resp)
            except httpx.TransportError as exc:
                done, value = self.policy.after(path, attempt, ends, error=exc)
            if done:
                return value
            await asyncio.sleep(value)
            attempt += 1
