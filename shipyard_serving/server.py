"""How a pod serves a Bento: its JSON APIs on one uvicorn worker, without BentoML's per-request stack.

Why: measured side by side (docs/performance.md, `python -m bench.run`), `bentoml serve` answers a
third of what a hand-written FastAPI app answers on the same model, because every request pays for
an OpenTelemetry span, a contextvars Context, two metrics middlewares, an access log line and the
IO descriptors' Starlette Request. This server loads the same Bento the same way BentoML's worker
does (`_bentoml_impl.loader.load`, the Bento's stored arguments, its models), builds the same service
instance (startup and shutdown hooks included) and keeps what is worth its cost on the hot path:

- validation: each API's own input model (BentoML's `input_spec`, `model_validate_json` as BentoML's
  JSON serde does) and its output model for the answer; a handler's own Starlette Response passes
  through, as in BentoML;
- the service's ASGI middlewares (shipyard's error contract, admission control, OpenAPI document)
  and the service's traffic timeout (around the API's work, so a refusal costs no timer);
- BentoML's request metrics under BentoML's names and labels (`bentoml_service_request_total`,
  `..._duration_seconds`, `..._in_progress`) and the service's own metrics on /metrics;
- /livez, /readyz (the service's `__is_alive__` / `__is_ready__`) and /healthz.

A service this server cannot serve the same way is served by `bentoml serve` instead, with the
reasons logged (handover.py): the Bento stays the unit of packaging, and `bentoml serve` of it keeps
working either way.

This module is the command line; the parts live by job: app.py (routes, lifespan, each API's call,
the middleware stack), endpoint.py (one API's parsing, call and answer), metrics.py (BentoML's
request metrics), timeout.py (the traffic timeout, shared with the hand-over), protocol.py and
overload.py (admission control), handover.py.

    python -m shipyard_serving.server [BENTO] [--host 0.0.0.0] [--port 3000]

BENTO is a Bento folder (default: the working directory, as in a container), a Bento tag or a
service's import path (module:Class).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from .app import ServiceApp, build_app
from .handover import bentoml_serve, need_bentoml_serve, unsupported

logger = logging.getLogger("shipyard.server")


def http_protocol(app: Any) -> Any:
    """uvicorn's httptools protocol with admission control at the door (protocol.py) when the app
    has shipyard's admission middleware; otherwise uvicorn's own choice."""
    from .overload import DeadlineMiddleware

    try:
        from .protocol import admitting_protocol
    except ImportError:  # no httptools: uvicorn's h11 protocol, and admission stays in the middleware
        return "auto"
    gate = app
    while gate is not None and not isinstance(gate, DeadlineMiddleware):
        gate = getattr(gate, "app", None)
    return "auto" if gate is None else admitting_protocol(gate, app.metrics.observe_many)


def load_service(bento: str) -> Any:
    """The service as BentoML's worker loads it: a Bento folder or tag with its stored arguments
    and models, or a service's import path."""
    from .compat import load_service as load

    return load(bento)


def _check(service: Any, reasons: list[str]) -> None:
    """--check: what serving would do, without a socket."""
    if reasons:
        need_bentoml_serve(reasons)
        print(f"would hand over to `bentoml serve`: {'; '.join(reasons)}")
        return
    app = ServiceApp(service)
    asyncio.run(app.start())
    print(f"ok: {service.name} would serve {', '.join(sorted(app.endpoints))}")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shipyard_serving.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("bento", nargs="?", default=".", help="a Bento folder (default: here), a Bento tag or module:Class")
    parser.add_argument("--host", default=os.environ.get("BENTOML_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENTOML_PORT", "3000")))
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=20,
                        help="seconds in-flight requests get after SIGTERM (default 20)")
    parser.add_argument("--check", action="store_true",
                        help="load the Bento, start its service (its model included) and exit: 0 if it would serve "
                             "(`shipyard image build` runs this in a serving image)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One process: its metrics live in its own registry, not in BentoML's multiprocess files.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import uvicorn

    # A folder becomes absolute first: BentoML's loader changes the working directory to the Bento's src.
    bento = str(Path(options.bento).resolve()) if Path(options.bento).is_dir() else options.bento
    service = load_service(bento)
    service.inject_config()
    reasons = unsupported(service)
    if options.check:
        _check(service, reasons)
        return
    if reasons:
        bentoml_serve(bento, options.host, options.port, reasons)
        return
    app = build_app(service)
    config = uvicorn.Config(app, host=options.host, port=options.port, loop="auto",
                            http=http_protocol(app), lifespan="on", log_config=None, access_log=False,
                            server_header=False, backlog=2048, proxy_headers=False,
                            timeout_graceful_shutdown=options.timeout_graceful_shutdown)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
