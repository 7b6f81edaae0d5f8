"""Save the stopword list the summarizer ranks sentences without, as a model."""

import json

import bentoml

STOPWORDS = ["a", "an", "the", "and", "or", "of", "to", "in", "on", "is", "are", "was", "by", "as",
             "that", "which", "what", "has", "have", "been", "be", "it", "its", "for", "with", "at", "into"]

with bentoml.models.create(name="summarizer_stopwords") as model:
    with open(model.path_of("stopwords.json"), "w") as f:
        json.dump(STOPWORDS, f)
    print(f"saved {model.tag}")
