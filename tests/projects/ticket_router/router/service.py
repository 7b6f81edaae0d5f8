"""The ticket-routing service (BentoML 1.4): one ticket or a list of tickets -> queue."""

from __future__ import annotations

import typing as t

import bentoml
import numpy as np
from pydantic import Field

from router import MODEL_NAME
from router.schemas import Routing, Ticket


@bentoml.service(name="ticket_router", traffic={"timeout": 10}, resources={"cpu": "1"})
class TicketRouter:
    model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)
        self.classes = [str(c) for c in self.model.classes_]
        self.model_version = str(self.model_ref.tag)

    def _route(self, tickets: list[Ticket]) -> list[Routing]:
        proba = self.model.predict_proba([tk.as_text() for tk in tickets])
        best = np.argmax(proba, axis=1)
        return [
            Routing(
                ticket_id=tk.ticket_id,
                queue=self.classes[int(j)],
                confidence=round(float(proba[i, j]), 6),
                model_version=self.model_version,
            )
            for i, (tk, j) in enumerate(zip(tickets, best))
        ]

    @bentoml.api(route="/route")
    def route(self, ticket: Ticket, /) -> Routing:
        """Route one ticket; the request body is the ticket itself."""
        return self._route([ticket])[0]

    @bentoml.api(route="/route_many")
    def route_many(
        self, tickets: t.Annotated[list[Ticket], Field(min_length=1, max_length=100)]
    ) -> list[Routing]:
        """Route 1..100 tickets sent as {"tickets": [...]}, answered in the same order."""
        return self._route(tickets)
