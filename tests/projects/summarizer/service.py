from __future__ import annotations

import json
import re
from collections import Counter

import bentoml
from pydantic import Field

EXAMPLE_INPUT = (
    "Breaking News: In an astonishing turn of events, the small town of Willow Creek has been "
    "taken by storm as local resident Jerry Thompson's cat, Whiskers, performed what witnesses "
    "are calling a 'miraculous and gravity-defying leap.' Eyewitnesses report that Whiskers, an "
    "otherwise unremarkable tabby cat, jumped a record-breaking 20 feet into the air to catch a "
    "fly. The event, which took place in Thompson's backyard, is now being investigated by "
    "scientists for potential breaches in the laws of physics."
)

my_image = bentoml.images.Image(python_version="3.11").python_packages("pydantic>=2")


@bentoml.service(
    image=my_image,
    resources={"cpu": "1"},
    traffic={"timeout": 10},
)
class Summarization:
    model = bentoml.models.BentoModel("summarizer_stopwords:latest")

    def __init__(self) -> None:
        with open(self.model.path_of("stopwords.json")) as f:
            self.stopwords = set(json.load(f))

    @bentoml.api
    def summarize(self, text: str = Field(examples=[EXAMPLE_INPUT]), sentences: int = Field(2, ge=1, le=5)) -> str:
        parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
        if len(parts) <= sentences:
            return text.strip()
        words = Counter(w for w in re.findall(r"[a-z']+", text.lower()) if w not in self.stopwords)
        ranked = sorted(parts, key=lambda p: -sum(words[w] for w in re.findall(r"[a-z']+", p.lower())))
        chosen = set(ranked[:sentences])
        return " ".join(p for p in parts if p in chosen)
