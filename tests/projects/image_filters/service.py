from __future__ import annotations

import json

import bentoml
from PIL import ImageFilter
from PIL.Image import Image
from pydantic import Field


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 30})
class ImageFilters:
    presets = bentoml.models.BentoModel("filter_presets:latest")

    def __init__(self) -> None:
        with open(self.presets.path_of("presets.json")) as f:
            self.radius = json.load(f)

    @bentoml.api(route="/v1/blur")
    def blur(self, image: Image, strength: str = Field("medium", pattern="^(light|medium|strong)$")) -> Image:
        """A blurred copy of the image, as PNG."""
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(self.radius[strength]))

    @bentoml.api(route="/v1/grayscale")
    def grayscale(self, image: Image) -> Image:
        return image.convert("L")
