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

A service this server cannot serve the same way (file or multipart IO, streaming, batchable or task
APIs, a request-context parameter, dependent services, mounted apps, several workers) is served by
`bentoml serve` instead, with the reasons logged: the Bento stays the unit of packaging, and
`bentoml serve` of it keeps working either way.

    python -m shipyard_serving.server [BENTO] [--host 0.0.0.0] [--port 3000]

BENTO is a Bento folder (default: the working directory, as in a container), a Bento tag or a
service's import path (module:Class).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import functools
import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

logger = logging.getLogger("shipyard.server")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = "application/json"
_TEXT = b"text/plain; charset=utf-8"
_PROBES = ("/livez", "/readyz", "/healthz")
_UNEXPECTED = {"error": "An unexpected error has occurred, please check the server log."}


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
        if api.input_spec.mime_type() != _JSON or api.input_spec.multipart_fields:
            why.append(f"{api.input_spec.mime_type()} input")
        if api.output_spec.mime_type() not in (_JSON, "text/plain"):
            why.append(f"{api.output_spec.mime_type()} output")
        if why:
            reasons.append(f"API {name} uses {', '.join(why)}")
    return reasons


class _Endpoint:
    """One API: its input model, its bound function and how its answer is written."""

    def __init__(self, api: Any, instance: Any, limiter: Any) -> None:
        from .compat import io_markers

        ARGS, KWARGS, IORootModel = io_markers()

        self.name = api.name
        self.input_spec = api.input_spec
        self.output_spec = api.output_spec
        self.root_input = bool(getattr(api.input_spec, "__root_input__", False))
        self.input_is_root_model = issubclass(api.input_spec, IORootModel)
        self.root_model = IORootModel
        self.output_adapter = _root_adapter(api.output_spec) if issubclass(api.output_spec, IORootModel) else None
        self.args_field, self.kwargs_field = ARGS, KWARGS
        mime = api.output_spec.mime_type()  # JSON, or text/plain for a str
        self.content_type = (mime + "; charset=utf-8" if mime.startswith("text/") else mime).encode()
        self.func = getattr(instance, api.name).local
        from .compat import get_original_func

        self.is_async = inspect.iscoroutinefunction(get_original_func(self.func))  # BentoML's own test
        self.limiter = limiter

    def arguments(self, body: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments from a JSON body, as BentoML's JSON serde parses it."""
        data = self.input_spec.model_validate_json(body or b"{}")
        if self.root_input:
            return ((data.root,) if self.input_is_root_model else (data,)), {}
        kwargs = {k: getattr(data, k) for k in self.input_spec.model_fields}
        args: tuple[Any, ...] = ()
        if self.args_field in kwargs:  # as BentoML passes a *args parameter: its values as one argument
            args = (kwargs.pop(self.args_field),)
        if self.kwargs_field in kwargs:
            kwargs.update(kwargs.pop(self.kwargs_field))
        return args, kwargs

    async def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.func(*args, **kwargs)
        # As BentoML does: a sync API runs in a thread (it may block as long as it likes), and no
        # more of them at once than the service's `threads` (1 by default: its code need not be
        # thread-safe).
        import anyio

        return await anyio.to_thread.run_sync(functools.partial(self.func, *args, **kwargs), limiter=self.limiter)

    def render(self, output: Any) -> bytes:
        """The answer's JSON, checked against the API's output type as BentoML checks it.

        BentoML writes a root output with `json.dumps(model_dump(mode="json"))`, a second walk over
        the answer in Python (150 us for 100 scores); pydantic-core validates and writes the same
        JSON document in one pass. The one difference: a NaN or infinite float is `null` here."""
        if isinstance(output, (str, bytes)):
            return output.encode() if isinstance(output, str) else output
        if self.output_adapter is not None:
            return self.output_adapter.dump_json(self.output_adapter.validate_python(
                output.root if isinstance(output, self.root_model) else output))
        return output.model_dump_json().encode()


class _RequestMetrics:
    """BentoML's own request metrics (names, labels, buckets), so dashboards and alerts that read
    a `bentoml serve` pod read this one unchanged."""

    def __init__(self, service: Any) -> None:
        import prometheus_client

        from .compat import bentoml_container

        BentoMLContainer = bentoml_container()

        labels = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
        self.total = prometheus_client.Counter(
            name="bentoml_service_request_total", documentation="Total number of runner RPC", labelnames=labels)
        self.duration = prometheus_client.Histogram(
            name="bentoml_service_request_duration_seconds", documentation="runner RPC duration in seconds",
            labelnames=labels, buckets=BentoMLContainer.duration_buckets.get())
        self.in_progress = prometheus_client.Gauge(
            name="bentoml_service_request_in_progress", documentation="Total number of runner RPC in progress now",
            labelnames=labels[:3] + ["runner_name"])
        bento = service.bento
        self.service_name = bento.tag.name if bento is not None else service.name
        self.service_version = (bento.tag.version or "not available") if bento is not None else "not available"
        self.runner_name = service.name
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._gauges: dict[str, Any] = {}

    def gauge(self, endpoint: str) -> Any:
        child = self._gauges.get(endpoint)
        if child is None:
            child = self._gauges[endpoint] = self.in_progress.labels(
                endpoint=endpoint, service_name=self.service_name, service_version=self.service_version,
                runner_name=self.runner_name)
        return child

    def _pair(self, endpoint: str, status: int) -> tuple[Any, Any]:
        children = self._children.get((endpoint, status))
        if children is None:
            labels = dict(endpoint=endpoint, service_name=self.service_name, service_version=self.service_version,
                          http_response_code=str(status), runner_name=self.runner_name)
            children = self._children[(endpoint, status)] = (self.total.labels(**labels), self.duration.labels(**labels))
        return children

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        total, duration = self._pair(endpoint, status)
        total.inc()
        duration.observe(seconds)

    def observe_many(self, endpoint: str, status: int, seconds: list[float]) -> None:
        """Many requests at once: one count and one sum update, and one per bucket they fell in
        (prometheus_client observes one value at a time, under a lock each; refusals at the door
        come by tens of thousands a second)."""
        total, duration = self._pair(endpoint, status)
        total.inc(len(seconds))
        duration._sum.inc(sum(seconds))  # noqa: SLF001 - the histogram child's own parts, as observe() updates them
        bounds = duration._upper_bounds  # noqa: SLF001
        per_bucket = collections.Counter(bisect.bisect_left(bounds, s) for s in seconds)
        for index, n in per_bucket.items():
            duration._buckets[index].inc(n)  # noqa: SLF001


class MetricsMiddleware:
    """Counts and times every request but /metrics (BentoML's RunnerTrafficMetricsMiddleware's rule).

    Unlike BentoML, a path the service does not serve is counted as `other`: every scanner's
    probe would otherwise add three metric series that live as long as the process."""

    def __init__(self, app: Callable, metrics: _RequestMetrics, known_paths: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.known_paths else "other"
        started = time.perf_counter()
        status = 0
        gauge = self.metrics.gauge(endpoint)
        gauge.inc()

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe(endpoint, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            gauge.dec()


class ServiceApp:
    """The innermost ASGI app: routes, the service's lifespan, and each API's call."""

    def __init__(self, service: Any) -> None:
        from .compat import join_paths

        self.service = service
        self.instance: Any = None
        self.routes = {join_paths(service.path_prefix, api.route): api for api in service.apis.values()}
        self.endpoints: dict[str, _Endpoint] = {}

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
                await _send(send, 405, b"Method Not Allowed", [(b"allow", b"POST")], _TEXT)
        elif path in _PROBES or path in ("/metrics", "/schema.json"):
            if method not in ("GET", "HEAD"):
                await _send(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")], _TEXT)
            elif path == "/metrics":
                await self._metrics(send)
            elif path == "/schema.json":  # what BentoML's own clients read first
                await _send(send, 200, json.dumps(self.service.schema()).encode())
            else:
                await self._probe(path, send)
        else:
            await _send(send, 404, b"Not Found", content_type=_TEXT)

    async def _api(self, endpoint: _Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        from pydantic import ValidationError
        from starlette.responses import Response

        body = await _read_body(receive)
        if body is None:  # the client left before its body arrived: nobody to answer
            return
        try:
            args, kwargs = endpoint.arguments(body)
        except json.JSONDecodeError as exc:  # a root input BentoML parses with json.loads: not JSON at all
            await _send(send, 400, json.dumps({"error": "invalid JSON", "detail": [
                {"loc": [], "msg": f"Invalid JSON: {exc.msg}", "type": "json_invalid"}]}).encode())
            return
        except ValidationError as exc:
            await self._invalid(exc, send)
            return
        except Exception as exc:  # noqa: BLE001 - a conversion around pydantic (numpy, pandas) refused the body
            await _send(send, 400, json.dumps({"error": f"the body does not fit the inputs of {endpoint.name}: "
                                                        f"{type(exc).__name__}: {exc}"}).encode())
            return
        try:
            output = await endpoint.call(args, kwargs)
            if isinstance(output, Response):
                await output(scope, _empty_receive, send)
                return
            payload = endpoint.render(output)
        except ValidationError as exc:  # raised by the API or its answer: BentoML answers 400 too
            await self._invalid(exc, send)
            return
        except Exception as exc:  # noqa: BLE001 - BentoML's rule: log it, answer a generic 5xx
            await self._failed(endpoint, exc, send)
            return
        await _send(send, 200, payload, content_type=endpoint.content_type)

    async def _invalid(self, exc: Any, send: Send) -> None:
        """BentoML's 400 body for a pydantic error (the service's error middleware rewrites it)."""
        await _send(send, 400, json.dumps({"error": f"{exc.error_count()} validation error for {exc.title}",
                                           "detail": exc.errors(include_context=False, include_input=False)}).encode())

    async def _failed(self, endpoint: _Endpoint, exc: Exception, send: Send) -> None:
        """BentoML's answer to an exception: its status (5xx, or a BentoMLException's own) and a
        body that keeps the details in the server log."""
        status = _status_of(exc)
        logger.exception("API %s failed", endpoint.name)
        body = (_UNEXPECTED if status >= 500 else {"error": "Authorization error"} if status in (401, 403)
                else {"error": str(exc)})
        await _send(send, status, json.dumps(body).encode())

    async def _probe(self, path: str, send: Send) -> None:
        # /healthz is BentoML's name for /livez
        hook = "__is_ready__" if path == "/readyz" else "__is_alive__"
        ok = True
        if self.instance is not None and hasattr(self.service.inner, hook):
            ok = bool(await _call_hook(getattr(self.instance, hook)))
        await _send(send, 200 if ok else 503, b"\n" if ok else b"not ready\n", content_type=_TEXT)

    async def _metrics(self, send: Send) -> None:
        import prometheus_client

        content = prometheus_client.generate_latest()
        if hasattr(self.service.inner, "__metrics__"):
            content = (await _call_hook(self.instance.__metrics__, content.decode())).encode()
        await _send(send, 200, content, content_type=prometheus_client.CONTENT_TYPE_LATEST.encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self._start()
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

    async def _start(self) -> None:
        import anyio
        from .compat import set_current_service

        self.instance = self.service()
        set_current_service(self.instance)  # bentoml.get_current_service() works as under BentoML
        await self._run_hooks("__bentoml_startup_hook__")
        limiter = anyio.CapacityLimiter(int(self.service.config.get("threads") or 1))
        self.endpoints = {path: _Endpoint(api, self.instance, limiter) for path, api in self.routes.items()}
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


def _root_adapter(spec: Any) -> Any:
    """A TypeAdapter for an IORootModel's root: its annotation with the field's constraints."""
    from typing import Annotated

    from pydantic import TypeAdapter

    field = spec.model_fields["root"]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def _status_of(exc: Exception) -> int:
    from bentoml.exceptions import BentoMLException

    return int(exc.error_code.value) if isinstance(exc, BentoMLException) else 500


async def _read_body(receive: Receive) -> bytes | None:
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


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def _send(send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]] = (),
                content_type: bytes = _JSON.encode()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


class TimeoutMiddleware:
    """The service's traffic timeout around the API's work: a request not answered in time gets a
    504 in the error contract's shape. One timer per request, cancelled when the request ends
    (BentoML's middleware keeps a timer and a second task per request: ~35 us, and its timer held
    the request's objects alive for the whole timeout, docs/performance.md)."""

    def __init__(self, app: Callable, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if not started:
                started = True
                window.reschedule(None)  # answering: no longer cancelled half-way through its body
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as window:
                await self.app(scope, receive, sending)
        except TimeoutError:
            if started:
                raise
            from .errors import send_json, timeout_body

            await send_json(send, 504, timeout_body(self.timeout))


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
    return MetricsMiddleware(app, _RequestMetrics(service), known | set(_PROBES) | {"/docs.json", "/schema.json"})


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
        _need_bentoml_serve(reasons)
        print(f"would hand over to `bentoml serve`: {'; '.join(reasons)}")
        return
    app = ServiceApp(service)
    asyncio.run(app._start())
    print(f"ok: {service.name} would serve {', '.join(sorted(app.endpoints))}")


def _need_bentoml_serve(reasons: list[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("circus") is None:  # BentoML's process manager, which `bentoml serve` needs
        raise SystemExit(f"error: this service needs `bentoml serve` ({'; '.join(reasons)}), and this environment "
                         "lacks BentoML's process manager (circus): a serving image (image.serving_lock) holds only "
                         "what shipyard's server imports; add circus and its dependencies to that lock, or drop it")


def _bentoml_serve(bento: str, host: str, port: int, reasons: list[str]) -> None:
    _need_bentoml_serve(reasons)
    logger.warning("serving with `bentoml serve`: %s", "; ".join(reasons))
    os.execv(sys.executable, [sys.executable, "-m", "bentoml", "serve", bento, "--host", host, "--port", str(port)])


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
        _bentoml_serve(bento, options.host, options.port, reasons)
        return
    app = build_app(service)
    config = uvicorn.Config(app, host=options.host, port=options.port, loop="auto",
                            http=http_protocol(app), lifespan="on", log_config=None, access_log=False,
                            server_header=False, backlog=2048, proxy_headers=False,
                            timeout_graceful_shutdown=options.timeout_graceful_shutdown)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
