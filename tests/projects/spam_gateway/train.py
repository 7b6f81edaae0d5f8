"""Learn per-word spam weights from a tiny labelled corpus and save them as a BentoML model."""

import json
from collections import Counter

import bentoml

SPAM = ["win a free prize now", "free money click now", "claim your free prize", "cheap pills win big"]
HAM = ["meeting moved to monday", "please review the report", "lunch at noon tomorrow", "the report is ready"]

spam_words, ham_words = Counter(" ".join(SPAM).split()), Counter(" ".join(HAM).split())
vocabulary = sorted(set(spam_words) | set(ham_words))
weights = {w: (spam_words[w] + 1) / (spam_words[w] + ham_words[w] + 2) for w in vocabulary}

with bentoml.models.create(name="spam_weights", metadata={"vocabulary_size": len(vocabulary)}) as model:
    with open(model.path_of("weights.json"), "w") as f:
        json.dump({"vocabulary": vocabulary, "weights": [weights[w] for w in vocabulary]}, f)
    print(f"saved {model.tag}")
