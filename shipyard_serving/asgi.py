"""The ASGI vocabulary the serving layer's own app and middlewares share: message types and the
helpers that read a body and answer (one copy, used by the app, the metrics and the timeout)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"
TEXT = b"text/plain; charset=utf-8"


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected before sending it."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def send_bytes(send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]] = (),
                     content_type: bytes = JSON.encode()) -> None:
    """A whole answer in two messages, its length declared (no chunked encoding)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})
