"""Small BentoML services that are not the fraud scorer, for the server's tests: what shipyard's
server serves itself (keyword inputs, a sync API, hooks, readiness) and what it hands over to
`bentoml serve` (adaptive batching)."""

from __future__ import annotations

import threading

import bentoml
from pydantic import BaseModel, Field


class Greeting(BaseModel):
    text: str
    in_thread: bool


@bentoml.service(name="greeter", traffic={"timeout": 10})
class Greeter:
    def __init__(self) -> None:
        self.started = False
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    @bentoml.on_startup
    def start(self) -> None:
        self.started = True

    def __is_ready__(self) -> bool:
        return self.started

    @bentoml.api
    def greet(self, name: str = Field(min_length=1, max_length=20), times: int = Field(default=1, ge=1, le=3)) -> Greeting:
        """A sync API: BentoML runs it in a thread, so must the server."""
        self.calls += 1
        return Greeting(text=" ".join([f"hello {name}"] * times), in_thread=threading.current_thread() is not threading.main_thread())

    @bentoml.api(route="/count")
    async def count(self) -> int:
        return self.calls

    @bentoml.api(route="/busy")
    def busy(self) -> int:
        """A sync API that takes a while: how many ran at once (BentoML's `threads`, 1 by default)."""
        import time

        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return self.most_at_once

    @bentoml.api(route="/total")
    async def total(self, numbers: list[int], /) -> int:
        """A root input BentoML parses with json.loads."""
        return sum(numbers)

    @bentoml.api(route="/fail")
    async def fail(self, why: str) -> str:
        raise RuntimeError(why)


@bentoml.service(name="doubler")
class Doubler:
    @bentoml.api(batchable=True)
    def double(self, numbers: list[int]) -> list[int]:
        return [2 * n for n in numbers]


@bentoml.service(name="sleeper", traffic={"timeout": 1})
class Sleeper:
    @bentoml.api
    async def nap(self, seconds: float = Field(ge=0, le=5)) -> str:
        import asyncio

        await asyncio.sleep(seconds)
        return "rested"
