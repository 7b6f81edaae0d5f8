"""'Train' the brightness classifier: the thresholds that split dark, normal and bright images,
saved to the BentoML model store like any model."""

import json

import bentoml

with bentoml.models.create(name="brightness_thresholds", labels={"kind": "rules"}) as model:
    with open(model.path_of("thresholds.json"), "w") as f:
        json.dump({"dark": 60.0, "bright": 190.0}, f)
    print(f"saved {model.tag}")
