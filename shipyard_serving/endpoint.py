"""One API as shipyard's server calls it: the body parsed as BentoML's JSON serde parses it, the
function called as BentoML calls it (sync ones in a thread, at most `threads` at once), the answer
checked against the API's output type."""

from __future__ import annotations

import functools
import inspect
from typing import Any


class Endpoint:
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


def _root_adapter(spec: Any) -> Any:
    """A TypeAdapter for an IORootModel's root: its annotation with the field's constraints."""
    from typing import Annotated

    from pydantic import TypeAdapter

    field = spec.model_fields["root"]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)
