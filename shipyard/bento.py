"""The `build` step: the Bento from bentofile.yaml, with the model version it packs."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.paths import PROJECT_ROOT


class BuildError(Exception):
    """The Bento could not be built; the message says what to do."""


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    model_tag: str
    path: str


def latest_model_tag() -> str | None:
    import bentoml

    from service.model import MODEL_NAME

    try:
        return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None


def build_bento() -> BuiltBento:
    """Runs `bentoml build` through its Python API on the project's bentofile.yaml."""
    import bentoml

    model = latest_model_tag()
    if model is None:
        raise BuildError("no model in the store to pack: run `shipyard train` first")
    # The exact version, as a Bento argument: serving the Bento later loads this one, not "latest".
    bento = bentoml.bentos.build_bentofile("bentofile.yaml", build_ctx=str(PROJECT_ROOT), args={"model": model})
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)


def resolve_bento(tag: str = "fraud_scorer:latest") -> BuiltBento:
    """A Bento already in the store; BuildError names the fix when there is none."""
    import bentoml

    try:
        bento = bentoml.get(tag)
    except bentoml.exceptions.NotFound:
        raise BuildError(f"no Bento {tag!r} in the store: run `shipyard build` first") from None
    models = [str(m.tag) for m in bento.info.all_models]
    return BuiltBento(str(bento.tag), models[0] if models else "", bento.path)
