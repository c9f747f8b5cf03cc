"""What a tenant may spend and on which models, and the month its spend is counted in.

Money is whole millionths of a US dollar (DynamoDB numbers, no floats), as the catalogue prices a
task (`ModelEntry.price_microusd`). A month is the UTC calendar month, `YYYY-MM`: a task counts in
the month it was accepted, and is given back to that same month if it fails before the provider
took it, even when that happens after the month has turned.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sora_relay.domain.errors import ConfigurationError, InvalidRequest

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's monthly budget (None: no limit) and the models it may use (empty: every one)."""

    budget_microusd: int | None = None
    models: frozenset[str] = frozenset()

    @classmethod
    def from_context(cls, context: dict[str, str]) -> TenantLimits:
        """From the authorizer's context: `budget_microusd` ("" = none), `models` (comma-joined, "" = all)."""
        budget = (context.get("budget_microusd") or "").strip()
        models = frozenset(part.strip() for part in (context.get("models") or "").split(",") if part.strip())
        if budget and not budget.isdigit():
            raise ConfigurationError("The authorizer's budget_microusd is not a whole number")
        return cls(budget_microusd=int(budget) if budget else None, models=models)

    def allows(self, model_id: str) -> bool:
        return not self.models or model_id in self.models


def month_of(epoch_ms: int) -> str:
    """The UTC month of a moment, `YYYY-MM`."""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def parse_month(text: str | None, *, now_ms: int) -> str:
    """`?month=YYYY-MM`, or the current UTC month when absent; anything else is a 400 naming `month`."""
    if text is None or text == "":
        return month_of(now_ms)
    if not MONTH.match(text):
        raise InvalidRequest("month must be a UTC month written YYYY-MM (e.g. 2026-12)", param="month")
    return text


def usd(microusd: int) -> float:
    """Dollars for an answer; the stored value stays exact."""
    return round(microusd / 1_000_000, 6)


class UsageObject(BaseModel):
    """`GET /v1/usage`: the caller's tenant's spend and count in one UTC month."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        json_schema_extra={"additionalProperties": False},
        defer_build=True,
    )

    object: Literal["usage"] = "usage"
    tenant_id: str = Field(description="The caller's tenant (the owner of its videos).")
    month: str = Field(pattern=MONTH.pattern, description="The UTC month, `YYYY-MM`.")
    spent_usd: float = Field(
        ge=0,
        description="The list price of the month's accepted videos (refused ones are given back), in USD.",
    )
    count: int = Field(ge=0, description="How many videos the spend counts.")
    budget_usd: float | None = Field(description="The tenant's monthly budget in USD; null: no limit.")
    remaining_usd: float | None = Field(description="What is left of the budget in USD; null: no limit.")

    @classmethod
    def of(
        cls, tenant_id: str, month: str, *, spent_microusd: int, count: int, budget_microusd: int | None
    ) -> UsageObject:
        limited = budget_microusd is not None
        return cls(
            tenant_id=tenant_id,
            month=month,
            spent_usd=usd(spent_microusd),
            count=count,
            budget_usd=usd(budget_microusd) if budget_microusd is not None else None,
            remaining_usd=usd(max((budget_microusd or 0) - spent_microusd, 0)) if limited else None,
        )
