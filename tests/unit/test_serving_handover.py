"""Which services shipyard's server serves itself and which it hands to `bentoml serve`, decided without a server (shipyard_serving/handover.py)."""

from __future__ import annotations

from pathlib import Path

import bentoml
from pydantic import BaseModel

from shipyard_serving.handover import unsupported


class Item(BaseModel):
    name: str


@bentoml.service
class Plain:
    @bentoml.api
    async def one(self, item: Item, /) -> Item:
        return item

    @bentoml.api
    def words(self, text: str, times: int = 1) -> str:
        return text * times


@bentoml.service(workers=2)
class Mixed:
    @bentoml.api(batchable=True)
    def many(self, numbers: list[int]) -> list[int]:
        return numbers

    @bentoml.api
    def upload(self, file: Path) -> str:
        return file.name

    @bentoml.api
    async def tokens(self, prompt: str):
        yield prompt

    @bentoml.api
    async def with_context(self, text: str, ctx: bentoml.Context) -> str:
        return text


@bentoml.service(workers="cpu_count")
class PerCore:
    @bentoml.api
    async def one(self, item: Item, /) -> Item:
        return item


def test_json_and_text_apis_are_served_here():
    assert unsupported(Plain) == []


def test_a_worker_per_core_is_handed_over_not_a_crash():
    assert unsupported(PerCore) == ["it asks for cpu_count workers (one per pod here: scale with replicas)"]


def test_every_reason_to_hand_over_is_named():
    reasons = unsupported(Mixed)
    assert reasons[0].startswith("it asks for 2 workers")
    joined = "\n".join(reasons)
    assert "API many uses adaptive batching" in joined
    assert "API upload uses multipart/form-data input" in joined
    assert "API tokens uses a streamed answer" in joined
    assert "API with_context uses a request-context parameter" in joined
