"""The single source of truth for what a transaction and a score look like.

Every serving mode (real-time API, batch, stream, edge) validates through these models, so the
modes can never disagree about what is valid. Constraints live here, in the type system, because
BentoML publishes them in the OpenAPI document and pydantic enforces them identically everywhere.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

SCHEMA_VERSION = "1"
MODEL_NAME = "fraud_detector"  # the model's name in the BentoML store, for every mode
# A client-sent list larger than this is rejected: one request must not monopolise a worker.
MAX_BATCH_ITEMS = 1000


# ISO 4217 codes the card processor settles in. A Literal rather than an Enum: strict mode then
# accepts the plain string from JSON, CSV and Python dicts alike.
Currency = Literal["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "INR"]
CURRENCIES: tuple[str, ...] = get_args(Currency)


_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _whole_number(value: object) -> object:
    """JSON Schema's `integer` is any number without a fractional part, so `15.0` is an integer
    (the published document says so, and JSON libraries may write it that way). Strict mode would
    refuse it; this turns exactly those floats into ints and leaves everything else (strings,
    booleans, 3.5) for strict validation to refuse."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


WholeNumber = BeforeValidator(_whole_number)


class Transaction(BaseModel):
    """One card transaction as the authorisation system sees it at decision time."""

    model_config = _STRICT

    transaction_id: Annotated[
        str | None,
        Field(
            default=None,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
            description="Caller's id, echoed back in the score. 1-64 of [A-Za-z0-9_.:-].",
        ),
    ] = None
    amount: Annotated[
        float,
        Field(gt=0, le=1_000_000, description="Amount in `currency` units; finite, > 0."),
    ]
    currency: Currency
    merchant_category: Annotated[
        str, Field(pattern=r"^\d{4}$", description="ISO 18245 merchant category code (4 digits).")
    ]
    country: Annotated[
        str,
        Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of the merchant."),
    ]
    hour: Annotated[int, Field(ge=0, le=23, description="Local hour of the transaction."), WholeNumber]
    card_present: Annotated[bool, Field(description="Chip or swipe (true) or card-not-present.")]
    distance_from_home_km: Annotated[
        float, Field(ge=0, le=20_038, description="Great-circle distance from the billing address.")
    ]
    transactions_last_24h: Annotated[
        int, Field(ge=0, le=1000, description="Transactions on this card in the previous 24 h."), WholeNumber
    ]
    account_age_days: Annotated[int, Field(ge=0, le=36_500, description="Age of the account."), WholeNumber]
    avg_amount_30d: Annotated[
        float,
        Field(ge=0, le=1_000_000, description="Mean amount on this card over 30 days, same currency."),
    ]


# Feature columns in the order the model was trained on; `transaction_id` is not a feature.
FEATURES: tuple[str, ...] = tuple(name for name in Transaction.model_fields if name != "transaction_id")
CATEGORICAL_FEATURES: tuple[str, ...] = ("currency", "merchant_category", "country")
NUMERIC_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in CATEGORICAL_FEATURES)


class Score(BaseModel):
    """The service's answer; validated before it leaves, so a broken model cannot answer wrongly."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    transaction_id: str | None = None
    probability: Annotated[float, Field(ge=0.0, le=1.0, description="P(fraud).")]
    decision: Literal["fraud", "legitimate"]
    threshold: Annotated[float, Field(ge=0.0, le=1.0, description="Decision threshold used.")]
    model_version: Annotated[str, Field(min_length=1)]


TransactionList = Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


class TransactionBatch(RootModel[TransactionList]):
    """The list route's body as a model of its own, so the JSON is parsed and validated in one
    pass by pydantic's own parser: a malformed body (truncated, invalid UTF-8, nested too deep) is
    then a validation error like any other (400 in the error contract), and no request pays for
    BentoML's generic root-list path (a JSON Schema built per request, then a second parse)."""
