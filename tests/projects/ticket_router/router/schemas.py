"""Request and response models (pydantic v2) for the ticket router."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


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
    account_age_days: int = Field(default=0, ge=0, le=36500)

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
