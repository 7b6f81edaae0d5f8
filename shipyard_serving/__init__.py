"""shipyard's serving layer: what every Bento that shipyard builds serves with, whatever its model.

- the error contract (errors.py): one JSON body for every 4xx/5xx, naming each invalid field and
  the rule it broke; wrong content types (415) and oversized bodies (413) refused before parsing;
- the published contract (openapi.py): an exact OpenAPI 3.1 document on /docs.json, with required
  bodies and every status the service can send;
- admission control (overload.py): 503 + Retry-After, fast, for work that cannot meet its deadline;
- a worker that does not stall (runtime.py): BentoML's timeout middleware replaced by one that
  does not retain every request, and the start-up heap frozen out of the collector's reach.

It imports only what a Bento already has (bentoml, starlette, pydantic) and nothing of the
shipyard toolkit (an import-linter contract keeps it so): `shipyard build` copies it into the
Bento and wraps the project's service with `install`, so the project's code imports nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def install(service: Any) -> Any:
    """Adds the serving layer to a BentoML service (idempotent); returns the service.

    Call at import time, before BentoML builds the worker's app: the build's entry module does."""
    import functools
    import inspect

    import bentoml

    from . import compat, overload, runtime
    from .errors import ErrorContractMiddleware
    from .openapi import OpenAPIMiddleware
    from .tasks import TaskContractMiddleware

    if getattr(service.inner, "_shipyard_serving", False):
        return service
    runtime.install()
    compat.bound_dependency_keepalive()
    compat.close_replaced_dependency_sessions_later()
    compat.retry_dependency_disconnects()
    compat.unparseable_bodies_are_bad_input(service)
    from .compat import get_original_func

    routes = tuple(sorted(api.route for api in service.apis.values()))
    # Async APIs run on the event loop, sync ones in a thread pool (BentoML's rule, and the server's).
    loop_routes = tuple(sorted(api.route for api in service.apis.values()
                               if inspect.iscoroutinefunction(get_original_func(api.func))))
    rejections = bentoml.metrics.Counter(
        name="shipyard_overload_rejections_total",
        documentation="Requests refused with 503 because they could not be answered within their deadline.",
        labelnames=["reason"],
    )
    # The first added is the outermost (Starlette): admission runs first, so a refused request costs
    # no body parsing; then the error contract guards what is admitted.
    timeout = (service.config.get("traffic") or {}).get("timeout")  # as the service declares it
    service.add_asgi_middleware(overload.DeadlineMiddleware, api_paths=routes, rejections=rejections,
                                loop_paths=loop_routes, timeout_s=float(timeout) if timeout else None)
    media_types = {api.route: api.input_spec.mime_type() for api in service.apis.values()}
    service.add_asgi_middleware(ErrorContractMiddleware, api_paths=routes, media_types=media_types)
    service.add_asgi_middleware(TaskContractMiddleware, media_types=media_types,
                                task_apis={api.route: api for api in service.apis.values() if api.is_task})
    service.add_asgi_middleware(OpenAPIMiddleware, service=service)
    inner_init = service.inner.__init__

    @functools.wraps(inner_init)
    def init_then_freeze(self: Any, *args: Any, **kwargs: Any) -> None:
        inner_init(self, *args, **kwargs)
        runtime.freeze_startup_heap()  # what the service loaded (its model) stays out of the collector's way

    service.inner.__init__ = init_then_freeze
    service.inner._shipyard_serving = True
    return service
