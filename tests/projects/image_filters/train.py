"""The blur radius of each preset, saved as a model so a release can change them."""

import json

import bentoml

with bentoml.models.create(name="filter_presets") as model:
    with open(model.path_of("presets.json"), "w") as f:
        json.dump({"light": 1.0, "medium": 2.5, "strong": 6.0}, f)
    print(f"saved {model.tag}")
