"""The fraud scorer's own staged suites (integration, acceptance): shipyard.yaml names them, and
`shipyard verify` runs them with shipyard's pytest plugin (fixtures `url`, `client`, `record`).
Testers run them directly the same way:

    SHIPYARD_TARGET_URL=http://127.0.0.1:3001 pytest -p shipyard.harness.staged.plugin tests/staged/integration
"""

from __future__ import annotations

VALID = {
    "transaction_id": "staged-1", "amount": 42.5, "currency": "EUR", "merchant_category": "5411",
    "country": "DE", "hour": 14, "card_present": True, "distance_from_home_km": 3.2,
    "transactions_last_24h": 2, "account_age_days": 800, "avg_amount_30d": 40.0,
}
