"""Fit a TF-IDF vectorizer on a few support messages and save it to the model store."""

import joblib
from sklearn.feature_extraction.text import TfidfVectorizer

import bentoml

CORPUS = [
    "my parcel arrived broken and I want a refund",
    "please change the delivery address of my order",
    "where is my parcel, the tracking has not moved",
    "I was charged twice for the same order",
    "how do I return a damaged item for a refund",
    "the courier left the parcel at the wrong address",
]

vectorizer = TfidfVectorizer(norm="l2").fit(CORPUS)
with bentoml.models.create(name="tfidf_vectorizer", metadata={"vocabulary": len(vectorizer.vocabulary_)}) as model:
    joblib.dump(vectorizer, model.path_of("vectorizer.joblib"))
    print(f"saved {model.tag}")
