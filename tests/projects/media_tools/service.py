from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from fastapi import FastAPI
from PIL import Image as PILImage
from PIL.Image import Image
from pydantic import BaseModel

logger = logging.getLogger("bentoml.service")

info_app = FastAPI()


@info_app.get("/version")
def version() -> dict:
    return {"service": "media-tools", "api": 1}


class Brightness(BaseModel):
    width: int
    height: int
    mean: float
    label: str


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 30})
@bentoml.asgi_app(info_app, path="/info")
class MediaTools:
    thresholds_ref = bentoml.models.BentoModel("brightness_thresholds:latest")

    def __init__(self) -> None:
        with open(self.thresholds_ref.path_of("thresholds.json")) as f:
            self.thresholds = json.load(f)
        self.thumbnail_size = int(os.environ.get("THUMBNAIL_SIZE", "64"))
        self.ready = False

    @bentoml.on_startup
    def warm_up(self) -> None:
        PILImage.new("RGB", (8, 8)).convert("L")
        self.ready = True
        logger.info("media tools warmed up")

    @bentoml.on_shutdown
    def goodbye(self) -> None:
        logger.info("media tools shutting down")

    def __is_ready__(self) -> bool:
        return self.ready

    def _brightness(self, image: Image) -> Brightness:
        gray = image.convert("L")
        pixels = list(gray.getdata())
        mean = sum(pixels) / max(len(pixels), 1)
        label = "dark" if mean < self.thresholds["dark"] else "bright" if mean > self.thresholds["bright"] else "normal"
        return Brightness(width=image.width, height=image.height, mean=round(mean, 2), label=label)

    @bentoml.api
    def brightness(self, image: Annotated[Image, ContentType("image/png")]) -> Brightness:
        """How bright a PNG image is."""
        return self._brightness(image)

    @bentoml.api
    def checksum(self, document: Annotated[Path, ContentType("application/pdf")]) -> str:
        """The SHA-256 of an uploaded PDF."""
        return hashlib.sha256(document.read_bytes()).hexdigest()

    @bentoml.task
    def thumbnail_stats(self, image: Image) -> Brightness:
        """A long-running job: shrink the image, then measure it."""
        small = image.copy()
        small.thumbnail((self.thumbnail_size, self.thumbnail_size))
        return self._brightness(small)
