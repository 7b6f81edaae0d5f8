"""Build the phrasebook from its source table and save it as a model."""

import json

import bentoml

PHRASES = {
    "good morning": {"de": "Guten Morgen", "fr": "Bonjour", "es": "Buenos días"},
    "thank you": {"de": "Danke", "fr": "Merci", "es": "Gracias"},
    "where is the station": {"de": "Wo ist der Bahnhof", "fr": "Où est la gare"},
}

with bentoml.models.create(name="phrasebook") as model:
    with open(model.path_of("phrases.json"), "w") as f:
        json.dump(PHRASES, f, ensure_ascii=False)
    print(f"saved {model.tag}")
