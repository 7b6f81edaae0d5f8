"""Request and response models (pydantic v2) for the ticket router."""

from __future__ import annotations

from enum import Enum

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _whole_number(value: object) -> object:
    """JSON Schema's `integer` includes 412.0; strict validation would refuse it, so exactly those
    floats become ints and everything else is left for strict validation to judge."""
    return int(value) if type(value) is float and value.is_integer() else value


class Channel(str, Enum):
    email = "email"
    chat = "chat"
    phone = "phone"
    web = "web"


class Tier(str, Enum):
    free = "free"
    pro = "pro"
    enterprise = "enterprise"


class Queue(str, Enum):
    billing = "billing"
    technical = "technical"
    account = "account"
    sales = "sales"


class Ticket(BaseModel):
    """One support ticket as the help desk sends it."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field(min_length=3, max_length=200)
    body: str = Field(min_length=1, max_length=5000)
    channel: Channel
    customer_tier: Tier = Tier.free
    # A JSON boolean is not a number of days (lax mode reads false as 0), but 412.0 is an integer.
    account_age_days: Annotated[int, Field(ge=0, le=36500, strict=True), BeforeValidator(_whole_number)] = 0

    def as_text(self) -> str:
        """The single string the model sees: the words plus tokens for the categorical fields.
        Used identically by training (router.train) and serving (router.service)."""
        age = "new" if self.account_age_days < 30 else "established"
        return (
            f"{self.subject} {self.body} "
            f"zchannel{self.channel.value} ztier{self.customer_tier.value} zage{age}"
        )


class Routing(BaseModel):
    """Where one ticket should go."""

    ticket_id: str
    queue: Queue
    confidence: float = Field(ge=0.0, le=1.0)
    model_version: str
