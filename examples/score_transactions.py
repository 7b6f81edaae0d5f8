"""Score a few transactions against a running environment with shipyard's typed client.

    python examples/score_transactions.py                     # staging, found with `shipyard status`
    python examples/score_transactions.py --url http://127.0.0.1:3001
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.client import FraudClient, RequestRejected  # noqa: E402

GROCERIES = {"amount": 42.5, "currency": "EUR", "merchant_category": "5411", "country": "DE", "hour": 14,
             "card_present": True, "distance_from_home_km": 3.2, "transactions_last_24h": 2,
             "account_age_days": 800, "avg_amount_30d": 40.0}
SUSPICIOUS = {**GROCERIES, "merchant_category": "5944", "amount": 1200.0, "hour": 3, "card_present": False,
              "distance_from_home_km": 6400.0, "account_age_days": 4, "transactions_last_24h": 14, "country": "NG"}


def environment_url(env: str) -> str:
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "status", env, "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    url = json.loads(out)[0]["url"]
    if not url:
        sys.exit(f"{env} is not running: shipyard deploy {env}")
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="service URL (default: the environment's, from shipyard status)")
    parser.add_argument("--env", default="staging", help="environment to look up when --url is not given")
    args = parser.parse_args()
    url = args.url or environment_url(args.env)
    with FraudClient(url, deadline_s=2.0) as client:
        one = client.score({**GROCERIES, "transaction_id": "example-1"})
        print(f"{one.transaction_id}: {one.decision} (p={one.probability:.4f}, model {one.model_version})")
        for score in client.score_many([{**GROCERIES, "transaction_id": "example-2"},
                                        {**SUSPICIOUS, "transaction_id": "example-3"}]):
            print(f"{score.transaction_id}: {score.decision} (p={score.probability:.4f})")
        try:
            client.score_many([])
        except RequestRejected as exc:
            print(f"an empty list is refused: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
