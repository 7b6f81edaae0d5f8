"""The error contract: one stable JSON shape for every rejected or failed request.

BentoML answers a pydantic failure with its own body; clients should not have to know that. This
ASGI middleware also rejects what should never reach the model (wrong content type, oversized
bodies) before any parsing, and how much schema detail an error reveals is a setting, because a
public endpoint may not want to teach attackers its constraints.

Body shape: {"error": <code>, "message": <summary>, "fields": [{"field", "rule", "message"}]}
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from .asgi import Message, Receive, Scope, Send


DETAIL_LEVELS = ("full", "fields", "none")
DEFAULT_MAX_BODY_BYTES = 1 << 20
# An API that takes files (images, documents, audio) gets room for a phone camera's photo.
DEFAULT_MAX_FILE_BODY_BYTES = 64 << 20


class FieldError(BaseModel):
    """One invalid field: where (a path such as `amount` or `[3].hour`), which rule, and why."""

    model_config = ConfigDict(extra="forbid")
    field: str
    rule: str
    message: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx the service sends: a stable code, a sentence, and the invalid fields.

    `fields` is left out (or empty) when the error is about no field in particular; how much
    detail it carries is `SHIPYARD_ERROR_DETAIL` (full, fields or none)."""

    model_config = ConfigDict(extra="forbid", title="Error")
    error: str
    message: str
    fields: list[FieldError] | None = None


def error_detail_level() -> str:
    """`SHIPYARD_ERROR_DETAIL`: full (field, rule, message), fields (field, rule) or none."""
    level = os.environ.get("SHIPYARD_ERROR_DETAIL", "full")
    if level not in DETAIL_LEVELS:
        raise ValueError(f"SHIPYARD_ERROR_DETAIL must be one of {', '.join(DETAIL_LEVELS)}, not {level!r}")
    return level


def field_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """pydantic's loc as a path a person reads: (0, "amount") -> "[0].amount"; () -> "body".

    BentoML wraps a list body in a root model whose loc starts with "root": that is the body.
    """
    parts = list(loc)
    if parts[:1] == ["root"]:
        parts = parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_body(errors: list[dict[str, Any]], level: str) -> dict[str, Any]:
    """The contract's body for a list of pydantic errors at the given detail level."""
    body: dict[str, Any] = {
        "error": "validation_error",
        "message": f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}",
    }
    if level == "none":
        return body
    fields = []
    for err in errors:
        item = {"field": field_path(err.get("loc", ())), "rule": err.get("type", "invalid")}
        if level == "full":
            item["message"] = err.get("msg", "")
        fields.append(item)
    body["fields"] = fields
    return body


def error_body(code: str, message: str, field: str | None = None, rule: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["fields"] = [{"field": field, "rule": rule or code, "message": message}]
    return body


def timeout_body(seconds: float) -> dict[str, Any]:
    """The 504 a request gets when the service's traffic timeout ends it before its answer starts."""
    return error_body("timeout", f"the request was not answered within {seconds:g} s")


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON answer from ASGI middleware (the error contract's and admission's refusals)."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class ErrorContractMiddleware:
    """Guards the POST APIs and rewrites BentoML's 400 bodies into the contract's shape."""

    def __init__(self, app: Callable, api_paths: tuple[str, ...] = (), max_body_bytes: int | None = None,
                 media_types: dict[str, str] | None = None) -> None:
        self.app = app
        self.api_paths = frozenset(api_paths)
        # Every API takes JSON; one with file or image fields also takes multipart/form-data (BentoML
        # picks its parser by the request's Content-Type).
        self.accepted = {path: sorted({"application/json", (media_types or {}).get(path, "application/json")})
                         for path in api_paths}
        configured = max_body_bytes or int(os.environ.get("SHIPYARD_MAX_BODY_BYTES", "0"))
        self.limits = {path: configured or (DEFAULT_MAX_FILE_BODY_BYTES if len(types) > 1 else DEFAULT_MAX_BODY_BYTES)
                       for path, types in self.accepted.items()}
        self.level = error_detail_level()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.api_paths:
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":  # a CORS preflight: BentoML's CORS middleware answers it
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await send_json(send, 405, error_body("method_not_allowed", "use POST"), [(b"allow", b"POST")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        accepted = self.accepted[scope["path"]]
        if media_type not in accepted:
            shown = media_type or "none"
            await send_json(
                send,
                415,
                error_body("unsupported_media_type", f"Content-Type must be {' or '.join(accepted)}, got {shown}",
                           "Content-Type", "media_type"),
            )
            return
        limit = self.limits[scope["path"]]
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(send, limit)
            return
        body = await self._read_body(receive, limit)
        if body is None:
            await self._too_large(send, limit)
            return
        await self.app(scope, replay(body, receive), _RewritingSend(send, self.level))

    async def _read_body(self, receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None once it exceeds the limit (chunked uploads declare no length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send, limit: int) -> None:
        await send_json(
            send,
            413,
            error_body("payload_too_large", f"request body exceeds {limit} bytes (SHIPYARD_MAX_BODY_BYTES)",
                       "body", "max_bytes"),
        )


def replay(body: bytes, then: Receive | None = None) -> Receive:
    """A receive that gives the whole body once, then the connection's own `then` (a streamed
    answer listens on it for the client leaving: answering `http.disconnect` at once would cut
    the stream after its first chunk), or a disconnect when there is none."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


class RewritingSend:
    """Buffers the answers `rewrites(status)` picks and re-emits them as `rewrite(status, body)`
    says: a whole answer in the error contract's shape, every other answer passed on as it is."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    def rewrites(self, status: int) -> bool:
        return status >= 400

    def rewrite(self, status: int, original: Any) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.rewrites(message["status"]):
            self.start = message
            return
        if self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        try:
            original = json.loads(b"".join(self.chunks))
        except ValueError:
            original = None
        status, body = self.rewrite(self.start["status"], original)
        await send_json(self.send, status, body)


class _RewritingSend(RewritingSend):
    """BentoML's 400 and 5xx answers in the contract's shape."""

    def __init__(self, send: Send, level: str) -> None:
        super().__init__(send)
        self.level = level

    def rewrites(self, status: int) -> bool:
        return status == 400 or status >= 500

    def rewrite(self, status: int, original: Any) -> tuple[int, dict[str, Any]]:
        if isinstance(original, list) and len(original) == 1 and isinstance(original[0], dict):
            original = original[0]  # BentoML answers a BentoMLException's 4xx as a one-element list
        if isinstance(original, dict) and {"error", "message"} <= original.keys():
            return status, original  # already the contract (the service's own, or a task's checked body)
        if status == 400:
            said = (original.get("detail") or original.get("error")) if isinstance(original, dict) else None
            if isinstance(said, list) and all(isinstance(e, dict) for e in said):  # pydantic's errors
                return status, validation_body(said, self.level)
            # BentoML's BadInput: its message is the reason
            return status, error_body("bad_request", str(said) if said else "the request was rejected")
        # BentoML's generic 500: the contract's shape, the details stay in the server log
        return status, error_body("internal_error", "an unexpected error occurred; the server log has the details")
