"""shipyard's ASGI app for one BentoML service: routes, the service's lifespan and hooks, each
API's call and BentoML's answers to what goes wrong, wrapped in the service's own middlewares,
its concurrency limit and traffic timeout, and BentoML's request metrics (server.py runs it)."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any, Callable

from .asgi import TEXT, Receive, Scope, Send, empty_receive, read_body, send_bytes
from .endpoint import Endpoint
from .metrics import MetricsMiddleware, RequestMetrics
from .timeout import TimeoutMiddleware

logger = logging.getLogger("shipyard.server")

PROBES = ("/livez", "/readyz", "/healthz")
_UNEXPECTED = {"error": "An unexpected error has occurred, please check the server log."}


class ServiceApp:
    """The innermost ASGI app: routes, the service's lifespan, and each API's call."""

    def __init__(self, service: Any) -> None:
        from .compat import join_paths

        self.service = service
        self.instance: Any = None
        self.routes = {join_paths(service.path_prefix, api.route): api for api in service.apis.values()}
        self.endpoints: dict[str, Endpoint] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        endpoint = self.endpoints.get(path)
        if endpoint is not None:
            if method == "POST":
                await self._api(endpoint, scope, receive, send)
            else:
                await send_bytes(send, 405, b"Method Not Allowed", [(b"allow", b"POST")], TEXT)
        elif path in PROBES or path in ("/metrics", "/schema.json"):
            if method not in ("GET", "HEAD"):
                await send_bytes(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")], TEXT)
            elif path == "/metrics":
                await self._metrics(send)
            elif path == "/schema.json":  # what BentoML's own clients read first
                await send_bytes(send, 200, json.dumps(self.service.schema()).encode())
            else:
                await self._probe(path, send)
        else:
            await send_bytes(send, 404, b"Not Found", content_type=TEXT)

    async def _api(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        from pydantic import ValidationError
        from starlette.responses import Response

        body = await read_body(receive)
        if body is None:  # the client left before its body arrived: nobody to answer
            return
        try:
            args, kwargs = endpoint.arguments(body)
        except json.JSONDecodeError as exc:  # a root input BentoML parses with json.loads: not JSON at all
            await send_bytes(send, 400, json.dumps({"error": "invalid JSON", "detail": [
                {"loc": [], "msg": f"Invalid JSON: {exc.msg}", "type": "json_invalid"}]}).encode())
            return
        except ValidationError as exc:
            await self._invalid(exc, send)
            return
        except Exception as exc:  # noqa: BLE001 - a conversion around pydantic (numpy, pandas) refused the body
            await send_bytes(send, 400, json.dumps({"error": f"the body does not fit the inputs of {endpoint.name}: "
                                                        f"{type(exc).__name__}: {exc}"}).encode())
            return
        try:
            output = await endpoint.call(args, kwargs)
            if isinstance(output, Response):
                await output(scope, empty_receive, send)
                return
            payload = endpoint.render(output)
        except ValidationError as exc:  # raised by the API or its answer: BentoML answers 400 too
            await self._invalid(exc, send)
            return
        except Exception as exc:  # noqa: BLE001 - BentoML's rule: log it, answer a generic 5xx
            await self._failed(endpoint, exc, send)
            return
        await send_bytes(send, 200, payload, content_type=endpoint.content_type)

    async def _invalid(self, exc: Any, send: Send) -> None:
        """BentoML's 400 body for a pydantic error (the service's error middleware rewrites it)."""
        await send_bytes(send, 400, json.dumps({"error": f"{exc.error_count()} validation error for {exc.title}",
                                           "detail": exc.errors(include_context=False, include_input=False)}).encode())

    async def _failed(self, endpoint: Endpoint, exc: Exception, send: Send) -> None:
        """BentoML's answer to an exception: its status (5xx, or a BentoMLException's own) and a
        body that keeps the details in the server log."""
        status = _status_of(exc)
        logger.exception("API %s failed", endpoint.name)
        body = (_UNEXPECTED if status >= 500 else {"error": "Authorization error"} if status in (401, 403)
                else {"error": str(exc)})
        await send_bytes(send, status, json.dumps(body).encode())

    async def _probe(self, path: str, send: Send) -> None:
        # /healthz is BentoML's name for /livez
        hook = "__is_ready__" if path == "/readyz" else "__is_alive__"
        ok = True
        if self.instance is not None and hasattr(self.service.inner, hook):
            ok = bool(await _call_hook(getattr(self.instance, hook)))
        await send_bytes(send, 200 if ok else 503, b"\n" if ok else b"not ready\n", content_type=TEXT)

    async def _metrics(self, send: Send) -> None:
        import prometheus_client

        content = prometheus_client.generate_latest()
        if hasattr(self.service.inner, "__metrics__"):
            content = (await _call_hook(self.instance.__metrics__, content.decode())).encode()
        await send_bytes(send, 200, content, content_type=prometheus_client.CONTENT_TYPE_LATEST.encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self.start()
        except BaseException as exc:  # noqa: BLE001 - uvicorn reports it and exits
            logger.exception("the service failed to start")
            await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        try:
            await self._run_hooks("__bentoml_shutdown_hook__")
        finally:
            await send({"type": "lifespan.shutdown.complete"})

    async def start(self) -> None:
        import anyio
        from .compat import set_current_service

        self.instance = self.service()
        set_current_service(self.instance)  # bentoml.get_current_service() works as under BentoML
        await self._run_hooks("__bentoml_startup_hook__")
        limiter = anyio.CapacityLimiter(int(self.service.config.get("threads") or 1))
        self.endpoints = {path: Endpoint(api, self.instance, limiter) for path, api in self.routes.items()}
        logger.info("serving %s: %s", self.service.name, ", ".join(sorted(self.endpoints)))

    async def _run_hooks(self, marker: str) -> None:
        for name in dir(self.service.inner):
            member = getattr(self.service.inner, name)
            if not name.startswith("__") and callable(member) and getattr(member, marker, False):
                result = getattr(self.instance, name)()
                if inspect.isawaitable(result):
                    await result


async def _call_hook(hook: Callable, *args: Any) -> Any:
    """A service's own probe or metrics hook: awaited if async, else in a thread (as BentoML
    does), so a slow check does not stall every request on the event loop."""
    if inspect.iscoroutinefunction(hook):
        return await hook(*args)
    import anyio

    return await anyio.to_thread.run_sync(functools.partial(hook, *args))


def _status_of(exc: Exception) -> int:
    from bentoml.exceptions import BentoMLException

    return int(exc.error_code.value) if isinstance(exc, BentoMLException) else 500


def build_app(service: Any) -> Callable:
    """The service's whole ASGI app: metrics outermost, then the service's own middlewares (first
    added is outermost, as in Starlette: shipyard's admission control refuses before anything
    else runs), then the concurrency limit and the traffic timeout around the API's work."""
    from .compat import bentoml_container, join_paths, max_concurrency_middleware

    MaxConcurrencyMiddleware = max_concurrency_middleware()
    BentoMLContainer = bentoml_container()

    service.inject_config()  # BentoML's defaults and BENTOML_CONFIG overrides, as its worker reads them
    traffic = BentoMLContainer.config.services[service.name].get().get("traffic") or {}
    app: Callable = ServiceApp(service)
    if traffic.get("timeout"):
        app = TimeoutMiddleware(app, timeout=float(traffic["timeout"]))
    if traffic.get("max_concurrency"):
        app = MaxConcurrencyMiddleware(app, max_concurrency=int(traffic["max_concurrency"]))
    for middleware, options in reversed(service.middlewares):
        app = middleware(app, **options)
    known = {join_paths(service.path_prefix, api.route) for api in service.apis.values()}
    return MetricsMiddleware(app, RequestMetrics(service), known | set(PROBES) | {"/docs.json", "/schema.json"})
