"""shipyard_serving/openapi.py: the document is made for any BentoML service, whatever its models
are called. BentoML names every API's model built from keyword parameters `Input`, and two modules
may define models of one name: each gets a distinct, stable name, and every reference follows."""

from __future__ import annotations

from typing import Annotated, AsyncGenerator

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model

from shipyard_serving.openapi import contract_document


class Ticket(BaseModel):
    subject: str
    body: str = ""


# Another module's `Ticket`, of another shape.
OtherTicket = create_model("Ticket", priority=(int, ...))


@bentoml.service
class TicketRouter:
    @bentoml.api
    def route(self, ticket: Ticket) -> dict:
        return {"queue": "billing"}

    @bentoml.api
    def route_many(self, tickets: list[Ticket]) -> list[dict]:
        return [{"queue": "billing"} for _ in tickets]

    @bentoml.api
    def escalate(self, ticket: OtherTicket, urgent: bool = False) -> dict:  # type: ignore[valid-type]
        return {"escalated": urgent}


def _resolve(document: dict, ref: str) -> dict:
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_apis_with_keyword_parameters_and_models_sharing_a_name_make_a_valid_document():
    document = contract_document(TicketRouter)
    validate(document)  # OpenAPI 3.1, every $ref resolvable
    bodies = {path: _resolve(document, op["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"])
              for path, op in document["paths"].items() if path in ("/route", "/route_many", "/escalate")}
    assert {path: body["title"] for path, body in bodies.items()} == {
        "/route": "RouteInput", "/route_many": "RouteManyInput", "/escalate": "EscalateInput"}
    # Each API's `ticket` is its own Ticket: the references were renamed with the schemas.
    routed = _resolve(document, bodies["/route"]["properties"]["ticket"]["$ref"])
    escalated = _resolve(document, bodies["/escalate"]["properties"]["ticket"]["$ref"])
    assert set(routed["properties"]) == {"subject", "body"} and set(escalated["properties"]) == {"priority"}
    assert _resolve(document, bodies["/route_many"]["properties"]["tickets"]["items"]["$ref"]) == routed


def test_the_names_are_stable_from_one_build_to_the_next():
    assert contract_document(TicketRouter) == contract_document(TicketRouter)


@bentoml.service
class Embedder:
    @bentoml.api(batchable=True)
    def embed(self, vectors: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]) -> np.ndarray:
        return vectors * 2


@bentoml.service
class Gateway:
    embedder = bentoml.depends(Embedder)

    @bentoml.api
    def classify(self, text: str, ctx: bentoml.Context) -> dict:
        ctx.response.status_code = 201
        return {"label": "spam" if "win" in text else "ham"}

    @bentoml.api
    async def stream(self, prompt: str) -> AsyncGenerator[str, None]:
        for word in prompt.split():
            yield word + " "


def _operation(document: dict, path: str) -> dict:
    return document["paths"][path]["post"]


def test_numpy_arrays_streams_and_a_context_are_documented_as_bentoml_serves_them():
    """Types pydantic cannot describe (numpy arrays, generators) get BentoML's own description,
    made valid JSON Schema; an API with a Context may answer any 2xx it sets."""
    for service in (Gateway, Embedder):
        validate(contract_document(service))
    gateway, embedder = contract_document(Gateway), contract_document(Embedder)
    assert set(_operation(gateway, "/stream")["responses"]["200"]["content"]) == {"text/event-stream"}
    assert "2XX" in _operation(gateway, "/classify")["responses"]
    assert "2XX" not in _operation(gateway, "/stream")["responses"]
    answer = _operation(embedder, "/embed")["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["type"] == "array"
    for operation in (_operation(gateway, "/classify"), _operation(embedder, "/embed")):  # the error contract
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


from pathlib import Path  # noqa: E402

from bentoml.validators import ContentType  # noqa: E402
from PIL.Image import Image  # noqa: E402


@bentoml.service
class MediaService:
    @bentoml.api
    def caption(self, image: Image, style: str = "short") -> str:
        return style

    @bentoml.api
    def checksum(self, document: Annotated[Path, ContentType("application/pdf")]) -> str:
        return "x"

    @bentoml.task
    def describe(self, image: Image) -> dict:
        return {}


def test_file_fields_say_their_media_type_and_task_apis_are_documented_as_served():
    """BentoML drops a file field's media type from its document and writes its task routes with
    status words its server never sends and one operationId twice; here both are exact."""
    document = contract_document(MediaService)
    validate(document)
    caption = document["paths"]["/caption"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert caption["encoding"] == {"image": {"contentType": "image/png"}}  # a PIL image: any PIL reads; PNG is sent
    checksum = document["paths"]["/checksum"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert checksum["encoding"] == {"document": {"contentType": "application/pdf"}}
    submit = document["paths"]["/describe/submit"]["post"]
    assert submit["requestBody"]["required"] and "multipart/form-data" in submit["requestBody"]["content"]
    status = document["paths"]["/describe/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert status["properties"]["status"]["enum"] == ["pending", "in_progress", "completed", "failed", "canceled"]
    assert "409" in document["paths"]["/describe/get"]["get"]["responses"]  # a job still running
    assert "/describe/cancel" not in document["paths"]  # BentoML's server cannot cancel
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()
                     if "operationId" in op]
    assert len(operation_ids) == len(set(operation_ids))
