"""Task APIs (`@bentoml.task`) under the error contract, and their input checked when submitted.

BentoML serves a task API as `{route}/submit`, `/status`, `/get`, `/retry` and `/cancel`. Left as
they are: a body that breaks the API's input types is accepted at submit and only fails when the
job runs (the client learns it from a `failed` status, without the field or the rule); errors are
`{"error": "..."}` rather than the contract's shape; `/get` of a job still running answers 400, as
if the request were malformed; and `/cancel` on BentoML's own server marks the job canceled, keeps
running it and answers 400 "not supported". Here a submitted body is parsed as the API parses it
(400 naming each invalid field, before any job exists), every error has the contract's shape, a
running job's result is 409 (ask again later), and cancel answers 501 without touching the job.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import (ErrorContractMiddleware, Receive, RewritingSend, Scope, Send, error_body,
                     error_detail_level, replay, send_json, validation_body)

MANAGEMENT = ("/status", "/get", "/retry", "/cancel")
ROUTES = ("/submit", *MANAGEMENT)  # what BentoML serves beside a task API's own route
STATUS_CODES = {400: "bad_request", 404: "not_found", 409: "not_completed"}


class TaskContractMiddleware:
    """See the module's docstring; `task_apis` maps each task API's route to the API."""

    def __init__(self, app: Callable, task_apis: dict[str, Any] | None = None,
                 media_types: dict[str, str] | None = None) -> None:
        self.app = app
        self.apis = {f"{route}/submit": api for route, api in (task_apis or {}).items()}
        self.managed = {f"{route}{suffix}" for route in (task_apis or {}) for suffix in MANAGEMENT}
        submits = tuple(self.apis)
        # The submit route takes what its API takes, within the same limits.
        self.guard = ErrorContractMiddleware(self._submit, api_paths=submits, media_types={
            f"{route}/submit": media for route, media in (media_types or {}).items()})
        self.level = error_detail_level()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path in self.apis:
            await self.guard(scope, receive, send)
        elif path in self.managed and path.endswith("/cancel"):
            await send_json(send, 501, error_body(
                "not_implemented", "BentoML's server cannot cancel a task: let it finish, or stop the server"))
        elif path in self.managed:
            method = "POST" if path.endswith("/retry") else "GET"
            if scope.get("method") not in (method, "HEAD" if method == "GET" else method):
                await send_json(send, 405, error_body("method_not_allowed", f"use {method}"),
                                [(b"allow", method.encode())])
                return
            await self.app(scope, receive, _ContractErrors(send, not_completed=path.endswith("/get")))
        else:
            await self.app(scope, receive, send)

    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Behind the guard (method, media type, size): the body parsed as the API parses it."""
        from .compat import parse_input

        message = await receive()
        body = message.get("body", b"")
        try:
            await parse_input(self.apis[scope["path"]], scope, replay(body))
        except Exception as exc:  # noqa: BLE001 - whatever the API's parsing refuses, the client is told
            errors = getattr(exc, "errors", None)
            problem = (validation_body(errors(), self.level) if callable(errors) else
                       error_body("bad_request", f"the body does not fit the task's inputs: {exc}"))
            await send_json(send, 400, problem)
            return
        await self.app(scope, replay(body, receive), send)


class _ContractErrors(RewritingSend):
    """BentoML's task errors (`{"error": "..."}`) in the contract's shape; a job that is still
    running answers /get with 409."""

    def __init__(self, send: Send, not_completed: bool) -> None:
        super().__init__(send)
        self.not_completed = not_completed

    def rewrite(self, status: int, original: Any) -> tuple[int, dict[str, Any]]:
        said = str(original.get("error") or "") if isinstance(original, dict) else ""
        if self.not_completed and status == 400 and "not completed" in said:
            status = 409
        if status >= 500:
            return status, error_body("internal_error", "an unexpected error occurred; the server log has the details")
        return status, error_body(STATUS_CODES.get(status, "bad_request"), said or "the request was rejected")
