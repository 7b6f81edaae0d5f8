"""Train the ticket router on synthetic tickets and save it to the BentoML model store.

    python -m router.train            # honours BENTOML_HOME

Deterministic: the data comes from a fixed seed, so every run trains the same model.
"""

from __future__ import annotations

import bentoml
import numpy as np
import sklearn
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from router import MODEL_NAME, QUEUES
from router.schemas import Channel, Ticket, Tier

SEED = 7
N_TICKETS = 2000

VOCAB = {
    "billing": ["invoice", "charged", "refund", "payment", "card", "billing", "receipt", "twice", "price", "vat"],
    "technical": ["error", "crash", "timeout", "api", "bug", "slow", "500", "install", "sync", "broken"],
    "account": ["password", "login", "locked", "email", "username", "2fa", "reset", "delete", "profile", "access"],
    "sales": ["upgrade", "quote", "enterprise", "seats", "demo", "pricing", "trial", "contract", "discount", "plan"],
}
FILLER = ["please", "help", "hi", "thanks", "my", "the", "since", "today", "again", "urgent", "team", "we", "our"]


def synthetic_tickets(n: int, seed: int = SEED) -> tuple[list[Ticket], list[str]]:
    rng = np.random.default_rng(seed)
    tickets, labels = [], []
    for i in range(n):
        queue = QUEUES[int(rng.integers(len(QUEUES)))]
        # Mostly words of the ticket's queue, some of another queue (noise) and filler.
        other = QUEUES[int(rng.integers(len(QUEUES)))]
        words = list(rng.choice(VOCAB[queue], size=3)) + list(rng.choice(VOCAB[other], size=1))
        words += list(rng.choice(FILLER, size=int(rng.integers(2, 6))))
        rng.shuffle(words)
        tier = Tier.enterprise if queue == "sales" and rng.random() < 0.5 else list(Tier)[int(rng.integers(3))]
        tickets.append(
            Ticket(
                ticket_id=f"T{i:05d}",
                subject=" ".join(words[:3]),
                body=" ".join(words),
                channel=list(Channel)[int(rng.integers(4))],
                customer_tier=tier,
                account_age_days=int(rng.integers(0, 2000)),
            )
        )
        labels.append(queue)
    return tickets, labels


def main() -> None:
    tickets, labels = synthetic_tickets(N_TICKETS)
    texts = [t.as_text() for t in tickets]
    cut = int(0.8 * len(texts))
    model = make_pipeline(
        HashingVectorizer(n_features=2**12, alternate_sign=False, norm="l2"),
        LogisticRegression(max_iter=500, C=4.0),
    )
    model.fit(texts[:cut], labels[:cut])
    accuracy = float(model.score(texts[cut:], labels[cut:]))
    model.fit(texts, labels)  # final model on everything
    saved = bentoml.sklearn.save_model(
        MODEL_NAME,
        model,
        signatures={"predict_proba": {"batchable": False}},
        labels={"owner": "support-tools", "stage": "ticket-routing"},
        metadata={
            "queues": list(model.classes_),
            "holdout_accuracy": round(accuracy, 4),
            "seed": SEED,
            "n_tickets": N_TICKETS,
            "sklearn_version": sklearn.__version__,
        },
    )
    print(f"saved {saved.tag} holdout_accuracy={accuracy:.3f}")


if __name__ == "__main__":
    main()
