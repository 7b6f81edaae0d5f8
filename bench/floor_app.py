"""The HTTP floor: a bare ASGI app on the same uvicorn (httptools, uvloop) answering a fixed Score
without reading the model. Nothing served over HTTP on this machine can answer faster; every
server's rate is also reported as a share of this one.

    uvicorn bench.floor_app:app --port 8000
"""

from __future__ import annotations

import json

_ANSWER = json.dumps({"transaction_id": None, "probability": 0.01, "decision": "legitimate", "threshold": 0.5,
                      "model_version": "floor"}).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
