"""When shipyard's server hands a service over to `bentoml serve`, and the hand-over itself.

Why a hand-over at all: shipyard's server keeps only what is worth its cost on the hot path, so a
service it cannot serve exactly as BentoML would (file or multipart IO, streaming, batchable or
task APIs, a request-context parameter, dependent services, mounted apps, several workers, CORS,
TLS) is served by BentoML's own server, with the reasons logged."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .asgi import JSON

logger = logging.getLogger("shipyard.server")


def unsupported(service: Any) -> list[str]:
    """Why this server cannot serve `service` exactly as BentoML would (empty: it can)."""
    reasons = []
    if service.dependencies:
        reasons.append("it depends on other services")
    if service.mount_apps:
        reasons.append("it mounts ASGI apps")
    if service.has_custom_command():
        reasons.append("it runs a command of its own")
    from .compat import bentoml_container

    BentoMLContainer = bentoml_container()
    if BentoMLContainer.http.cors.enabled.get():
        reasons.append("CORS is configured")
    if BentoMLContainer.ssl.enabled.get():
        reasons.append("TLS is configured")
    workers = service.config.get("workers") or 1
    if workers != 1:  # a number, or "cpu_count"
        reasons.append(f"it asks for {workers} workers (one per pod here: scale with replicas)")
    for name, api in service.apis.items():
        why = []
        if api.batchable:
            why.append("adaptive batching")
        if api.is_task:
            why.append("a task API")
        if api.is_stream:
            why.append("a streamed answer")
        if api.ctx_param is not None:
            why.append("a request-context parameter")
        if api.input_spec.mime_type() != JSON or api.input_spec.multipart_fields:
            why.append(f"{api.input_spec.mime_type()} input")
        if api.output_spec.mime_type() not in (JSON, "text/plain"):
            why.append(f"{api.output_spec.mime_type()} output")
        if why:
            reasons.append(f"API {name} uses {', '.join(why)}")
    return reasons


def need_bentoml_serve(reasons: list[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("circus") is None:  # BentoML's process manager, which `bentoml serve` needs
        raise SystemExit(f"error: this service needs `bentoml serve` ({'; '.join(reasons)}), and this environment "
                         "lacks BentoML's process manager (circus): a serving image (image.serving_lock) holds only "
                         "what shipyard's server imports; add circus and its dependencies to that lock, or drop it")


def bentoml_serve(bento: str, host: str, port: int, reasons: list[str]) -> None:
    need_bentoml_serve(reasons)
    logger.warning("serving with `bentoml serve`: %s", "; ".join(reasons))
    os.execv(sys.executable, [sys.executable, "-m", "bentoml", "serve", bento, "--host", host, "--port", str(port)])
