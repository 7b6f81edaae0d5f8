"""Where the serving layer reaches into BentoML's and uvicorn's internals: the list of what it
borrows (BORROWED) and the releases it was tested on (TESTED), checked when a Bento is built, and
the patches it applies around BentoML's dependency client and input parsing, each with why.

Tested with BentoML 1.4.36 and 1.4.40 (1.4.33 has every internal, but its dependency client closes
the connector it shares between sessions: half the calls to a `bentoml.depends` service fail),
uvicorn 0.54.0 (images) and 0.55.0 (this repository's venv)."""

from __future__ import annotations

import json
import logging
from typing import Any

# Every internal the serving layer borrows (module, name), wherever it is imported: checked at
# `shipyard build` (check_borrowed), so a BentoML or uvicorn release that moved one fails the build
# naming it, instead of a request at run time.
BORROWED: tuple[tuple[str, str], ...] = (
    ("bentoml._internal.utils", "get_original_func"),
    ("bentoml._internal.utils.uri", "join_paths"),
    ("bentoml._internal.tag", "to_snake_case"),
    ("bentoml._internal.tag", "Tag"),
    ("bentoml._internal.configuration.containers", "BentoMLContainer"),
    ("bentoml._internal.server.http.traffic", "MaxConcurrencyMiddleware"),
    ("bentoml._internal.server.http", "traffic"),
    ("_bentoml_sdk.io_models", "IORootModel"),
    ("_bentoml_sdk.io_models", "ARGS"),
    ("_bentoml_sdk.io_models", "KWARGS"),
    ("_bentoml_sdk.service", "set_current_service"),
    ("_bentoml_impl.loader", "load"),
    ("_bentoml_impl.serde", "ALL_SERDE"),
    ("_bentoml_impl.client.proxy2", "AsyncClient"),
    ("_bentoml_impl.client.proxy2", "SessionManager"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"),
)
# The releases the serving layer was tested on: (distribution, lowest, below).
TESTED: tuple[tuple[str, str, str], ...] = (("bentoml", "1.4.36", "1.5"), ("uvicorn", "0.54", "0.56"),
                                             ("httptools", "0.9", "0.10"))


def _borrow(module: str, name: str) -> Any:
    """One borrowed internal, by the entry BORROWED lists for it (a new one must be listed)."""
    if (module, name) not in BORROWED:
        raise ValueError(f"{module}.{name} is not in BORROWED: list it there, so `shipyard build` checks it")
    return _attribute_or_submodule(module, name)


def _attribute_or_submodule(module: str, name: str) -> Any:
    """`from module import name`: an attribute, or a submodule not imported yet."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        return importlib.import_module(f"{module}.{name}")


# Everything the serving layer and the toolkit use of BentoML's and uvicorn's internals, by name.

def get_original_func(func: Any) -> Any:
    """An API's own function under BentoML's wrappers (async or not is read from it)."""
    return _borrow("bentoml._internal.utils", "get_original_func")(func)


def join_paths(*parts: str) -> str:
    return _borrow("bentoml._internal.utils.uri", "join_paths")(*parts)


def bentoml_container() -> Any:
    """BentoML's configuration container (service config, CORS/TLS settings)."""
    return _borrow("bentoml._internal.configuration.containers", "BentoMLContainer")


def max_concurrency_middleware() -> type:
    return _borrow("bentoml._internal.server.http.traffic", "MaxConcurrencyMiddleware")


def traffic_module() -> Any:
    """The module holding BentoML's TimeoutMiddleware, which runtime.py replaces."""
    return _borrow("bentoml._internal.server.http", "traffic")


def io_markers() -> tuple[str, str, type]:
    """(ARGS, KWARGS, IORootModel): how BentoML's input models mark *args, **kwargs and a root input."""
    return (_borrow("_bentoml_sdk.io_models", "ARGS"), _borrow("_bentoml_sdk.io_models", "KWARGS"),
            _borrow("_bentoml_sdk.io_models", "IORootModel"))


def set_current_service(instance: Any) -> None:
    _borrow("_bentoml_sdk.service", "set_current_service")(instance)


def load_service(bento: str) -> Any:
    """The service as BentoML's worker loads it (a Bento folder or tag, or module:Class)."""
    return _borrow("_bentoml_impl.loader", "load")(bento, standalone_load=True)


def http_tools_protocol() -> type:
    """uvicorn's httptools protocol class (ImportError without httptools)."""
    return _borrow("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol")


def bento_name(service_name: str) -> str:
    """BentoML's rule for a Bento's name from a service's: snake case, then its Tag's lower case."""
    tag = _borrow("bentoml._internal.tag", "Tag")
    return tag(_borrow("bentoml._internal.tag", "to_snake_case")(service_name)).name


class IncompatibleRelease(RuntimeError):
    """An installed release the serving layer was not tested on, or one that moved an internal."""


def check_borrowed() -> None:
    """Raises IncompatibleRelease naming each installed release outside TESTED and each borrowed
    internal that is missing, with the fix."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    problems = []
    for distribution, lowest, below in TESTED:
        try:
            installed = version(distribution)
        except PackageNotFoundError:
            problems.append(f"{distribution} is not installed (need >={lowest},<{below})")
            continue
        if not Version(lowest) <= Version(installed) < Version(below):
            problems.append(f"{distribution} {installed} is not a release shipyard's serving layer was tested on "
                            f"(>={lowest},<{below}): pip install '{distribution}>={lowest},<{below}'")
    for module, name in BORROWED:
        try:
            found = _attribute_or_submodule(module, name) is not None
        except ImportError:
            found = False
        if not found:
            problems.append(f"{module}.{name} is gone: this BentoML/uvicorn release moved an internal the serving "
                            "layer uses")
    if problems:
        raise IncompatibleRelease("; ".join(problems))


# A dependency's server (uvicorn) closes an idle keep-alive connection after 5 s; BentoML's client
# for `bentoml.depends` (aiohttp) keeps idle connections for 15 s, so a call that picks one the
# server just closed fails with "Server disconnected" and the API answers 500. Seen here after every
# stress run of a two-service project; BentoML #4971, fix proposed upstream in #5698 (the same bound).
DEPENDENCY_KEEPALIVE_S = 4.0

# A call whose connection dropped is made again on a fresh one, at most this many times in all.
_DEPENDENCY_ATTEMPTS = 3

_log = logging.getLogger(__name__)


def bound_dependency_keepalive() -> None:
    """Makes BentoML's dependency client drop idle connections before the dependency's server does."""
    try:
        from _bentoml_impl.client.proxy2 import SessionManager
    except ImportError:  # a BentoML without this client: nothing to bound
        _log.warning("shipyard_serving: BentoML's dependency client moved; idle connections are not bounded")
        return

    def bound(session: Any) -> Any:
        connector = session.connector
        if connector is not None and getattr(connector, "_keepalive_timeout", 0) > DEPENDENCY_KEEPALIVE_S:
            connector._keepalive_timeout = DEPENDENCY_KEEPALIVE_S
        return session

    if getattr(SessionManager._make_client, "_shipyard_bounded", False):
        return
    make_client = SessionManager._make_client

    def bounded(self: Any) -> Any:
        return bound(make_client(self))

    bounded._shipyard_bounded = True  # type: ignore[attr-defined]
    SessionManager._make_client = bounded  # type: ignore[method-assign]


def retry_dependency_disconnects() -> None:
    """A call to a `bentoml.depends` service whose connection dropped under the client (aiohttp:
    "Server disconnected", "Cannot write to closing transport", "Connector is closed") is made again
    on a fresh connection (up to _DEPENDENCY_ATTEMPTS in all) instead of failing the caller's
    request with a 500. Measured here with
    plain `bentoml serve` of a two-service project: 16 concurrent clients for 12 s got 173 such 500s
    of 3 274 answers. Retrying is what BentoML's own fix proposes (#5698, once); a model call is
    safe to repeat."""
    try:
        import aiohttp
        from _bentoml_impl.client.proxy2 import AsyncClient
    except ImportError:
        _log.warning("shipyard_serving: BentoML's dependency client moved; its disconnects are not retried")
        return
    if getattr(AsyncClient._call, "_shipyard_retried", False):
        return
    # Every connection-level failure: "Server disconnected", "Cannot write to closing transport",
    # and "Connector is closed" (the client replaces its session while calls still use the old one).
    dropped = aiohttp.ClientConnectionError
    call = AsyncClient._call

    async def once_more(self: Any, endpoint: Any, args: Any, kwargs: Any, *, headers: Any = None) -> Any:
        for attempt in range(_DEPENDENCY_ATTEMPTS):
            try:
                return await call(self, endpoint, args, kwargs, headers=headers)
            except dropped:
                if attempt == _DEPENDENCY_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    once_more._shipyard_retried = True  # type: ignore[attr-defined]
    AsyncClient._call = once_more  # type: ignore[method-assign]


def close_replaced_dependency_sessions_later() -> None:
    """BentoML's dependency client replaces its aiohttp session every 100 calls (SessionManager,
    `max_requests`) and closes the old one at once, failing every call still using it ("Connector
    is closed"; a retry meets the next replacement). Under an open-loop overload of a two-service
    project (make test's stress suite on the corpus's spam_gateway, BentoML 1.4.40 and 1.4.36) that
    was 384 of 4 179 requests answered 500. The replaced session is closed once the calls it may
    still carry are over (the client's timeout), not under them."""
    import asyncio

    try:
        SessionManager = _borrow("_bentoml_impl.client.proxy2", "SessionManager")
    except ImportError:
        _log.warning("shipyard_serving: BentoML's dependency client moved; its sessions are closed under calls")
        return
    if getattr(SessionManager.get_session, "_shipyard_later", False):
        return
    get_session = SessionManager.get_session
    closing: set[asyncio.Task] = set()  # the pending closes, kept until done

    async def replacing_later(self: Any) -> Any:
        old, should_refresh = getattr(self, "_session", None), getattr(self, "_should_refresh", None)
        if old is not None and should_refresh is not None and should_refresh():
            timeout = getattr(getattr(self, "_timeout", None), "total", None) or 30.0
            close = old.close

            async def close_later() -> None:
                loop = asyncio.get_running_loop()

                def start() -> None:
                    task = loop.create_task(close())
                    closing.add(task)
                    task.add_done_callback(closing.discard)

                loop.call_later(timeout, start)

            old.close = close_later  # what BentoML's get_session calls on the session it replaces
        return await get_session(self)

    replacing_later._shipyard_later = True  # type: ignore[attr-defined]
    SessionManager.get_session = replacing_later  # type: ignore[method-assign]


async def parse_input(api: Any, scope: dict[str, Any], receive: Any) -> Any:
    """The request parsed into `api`'s input as BentoML's own endpoint parses it (its serde by the
    request's Content-Type): how a task's body is checked when it is submitted."""
    from starlette.requests import Request

    ALL_SERDE = _borrow("_bentoml_impl.serde", "ALL_SERDE")

    request = Request(scope, receive)
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    serde = ALL_SERDE.get(media_type, ALL_SERDE["application/json"])()
    return await api.input_spec.from_http_request(request, serde)


def unparseable_bodies_are_bad_input(service: Any) -> None:
    """A body BentoML cannot turn into an API's input types is the client's error (400), not the
    server's. BentoML validates with pydantic, but what fails around pydantic (its conversions,
    PIL opening an upload that is no image, a multipart body without a boundary) it answers with 500: `{"input_series": {}}` for a numpy parameter
    ends in `float() argument must be ... not 'dict'`; and numpy takes `false`, `"1.5"` and `null`
    (as NaN, which the model then fails on) where the document says a number."""
    from bentoml.exceptions import BadInput, BentoMLException
    from pydantic import ValidationError

    for api in service.apis.values():
        spec = api.input_spec
        parse = getattr(spec, "from_http_request", None)
        if parse is None or getattr(parse, "_shipyard_bad_input", False):
            continue

        # Numeric numpy parameters (a Shape/DType-validated np.ndarray without a non-numeric dtype).
        tensors = tuple(name for name, field in getattr(spec, "model_fields", {}).items()
                        for m in field.metadata if getattr(m, "format", None) == "numpy-array"
                        and str(getattr(m, "dtype", None) or "float").startswith(("float", "int", "uint")))

        async def guarded(request: Any, serde: Any, _parse: Any = parse, _name: str = api.name,
                          _tensors: tuple[str, ...] = tensors) -> Any:
            if _tensors and request.headers.get("content-type", "application/json").startswith("application/json"):
                # numpy takes false, "1.5" and null (as NaN) for a number: the document does not
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError:
                    body = None  # BentoML's own parsing says what is wrong with it
                if isinstance(body, dict):
                    for name in _tensors:
                        _numbers_only(body.get(name), name, BadInput)
            try:
                return await _parse(request, serde)
            except (ValidationError, BentoMLException):
                raise  # BentoML answers these itself, with their own status
            except Exception as exc:  # noqa: BLE001 - the body could not be parsed: the client's error
                # TypeError/ValueError from conversions, PIL's UnidentifiedImageError (an OSError) for
                # a file that is no image, a multipart body without its boundary, ...
                raise BadInput(f"the body does not fit the inputs of {_name}: {type(exc).__name__}: {exc}") from exc

        guarded._shipyard_bad_input = True  # type: ignore[attr-defined]
        spec.from_http_request = guarded


def _numbers_only(value: Any, name: str, error: type[Exception]) -> None:
    """Every element of a nested list is a JSON number (not a boolean, string or null)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise error(f"{name}: every element must be a number, not {json.dumps(item)[:40]}")
        elif item is None and value is not None:
            raise error(f"{name}: every element must be a number, not null")
