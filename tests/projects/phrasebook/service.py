from __future__ import annotations

import json
from typing import Annotated

import bentoml
from annotated_types import MaxLen, MinLen

Language = Annotated[str, MinLen(2), MaxLen(2)]


@bentoml.service(
    http={"cors": {"enabled": True, "access_control_allow_origins": ["https://app.example.test"],
                   "access_control_allow_methods": ["GET", "POST"]}},
    traffic={"timeout": 5},
)
class Phrasebook:
    phrases_ref = bentoml.models.BentoModel("phrasebook:latest")

    def __init__(self) -> None:
        with open(self.phrases_ref.path_of("phrases.json")) as f:
            self.phrases: dict[str, dict[str, str]] = json.load(f)

    @bentoml.api
    async def translate(
        self,
        text: Annotated[str, MinLen(1), MaxLen(200)],
        target: Language = "de",
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> str:
        """The phrase in the target language, or the text unchanged when the phrasebook lacks it."""
        known = self.phrases.get(text.strip().lower(), {})
        ctx.response.headers["Content-Language"] = target if target in known else "en"
        return known.get(target, text)

    @bentoml.api
    async def languages(self) -> dict[str, list[str]]:
        """The languages each phrase is known in."""
        return {phrase: sorted(targets) for phrase, targets in self.phrases.items()}
