"""The tenants table as budgets see it: each tenant's monthly usage counter, and its limits.

Usage is one item per tenant and UTC month, `pk = usage#<tenant_id>#<YYYY-MM>`, with
`spent_microusd` and `count`. A reservation is one conditional UpdateItem (ADD cost and 1, only
while the spend stays within the budget), so any number of concurrent submits cannot pass the
budget together: DynamoDB applies them one at a time against the stored value. Giving one back is
the same ADD of the negatives, conditional on the spend covering it, so it never goes below zero.
The tenant item (`pk = tenant#<tenant_id>`, written by the operator command) is only read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.adapters.dynamodb_items import is_condition_failure
from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.errors import StorageError


def usage_key(tenant_id: str, month: str) -> str:
    return f"usage#{tenant_id}#{month}"


def tenant_key(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


@dataclass(frozen=True)
class Usage:
    spent_microusd: int = 0
    count: int = 0


class OverBudget(Exception):
    """The reservation was refused: `usage` is what the month holds now."""

    def __init__(self, usage: Usage) -> None:
        super().__init__("over budget")
        self.usage = usage


def _usage(item: dict[str, Any] | None) -> Usage:
    item = item or {}
    return Usage(
        spent_microusd=int(Decimal(item.get("spent_microusd", {}).get("N", "0"))),
        count=int(Decimal(item.get("count", {}).get("N", "0"))),
    )


class UsageStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def reserve(self, tenant_id: str, month: str, cost: int, *, budget: int | None) -> Usage:
        """Count `cost` and one task in the month; the month's usage after it.

        With a budget, only while the spend stays within it (OverBudget otherwise, with the usage
        that refused it). Without one, always: the count and spend still show in GET /v1/usage.
        """
        if budget is not None and cost > budget:
            raise OverBudget(self.read(tenant_id, month))
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": usage_key(tenant_id, month)}},
            "UpdateExpression": "ADD spent_microusd :cost, #count :one",
            "ExpressionAttributeNames": {"#count": "count"},
            "ExpressionAttributeValues": {":cost": {"N": str(cost)}, ":one": {"N": "1"}},
            "ReturnValues": "ALL_NEW",
        }
        if budget is not None:
            request["ConditionExpression"] = "attribute_not_exists(spent_microusd) OR spent_microusd <= :room"
            request["ExpressionAttributeValues"][":room"] = {"N": str(budget - cost)}
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            answer = self._client.update_item(**request)
        except ClientError as error:
            if is_condition_failure(error):
                raise OverBudget(_usage(error.response.get("Item"))) from None
            raise StorageError("Could not count the tenant's usage") from error
        except BotoCoreError as error:
            raise StorageError("Could not count the tenant's usage") from error
        return _usage(answer.get("Attributes"))

    def release(self, tenant_id: str, month: str, cost: int) -> bool:
        """Give a reservation back; False when the month's usage does not hold it (nothing changed)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": usage_key(tenant_id, month)}},
                UpdateExpression="ADD spent_microusd :minus, #count :minus_one",
                ConditionExpression="spent_microusd >= :cost AND #count >= :one",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={
                    ":minus": {"N": str(-cost)},
                    ":cost": {"N": str(cost)},
                    ":minus_one": {"N": "-1"},
                    ":one": {"N": "1"},
                },
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise StorageError("Could not give the tenant's usage back") from error
        except BotoCoreError as error:
            raise StorageError("Could not give the tenant's usage back") from error
        return True

    def read(self, tenant_id: str, month: str) -> Usage:
        return _usage(self._get(usage_key(tenant_id, month), "the tenant's usage"))

    def limits(self, tenant_id: str) -> TenantLimits | None:
        """The tenant item's budget and models; None when there is no such tenant."""
        item = self._get(tenant_key(tenant_id), "the tenant")
        if item is None:
            return None
        budget = item.get("monthly_budget_microusd", {}).get("N")
        models = frozenset(value.get("S", "") for value in item.get("models", {}).get("L", [])) - {""}
        return TenantLimits(
            budget_microusd=int(Decimal(budget)) if budget is not None else None, models=models
        )

    def _get(self, key: str, what: str) -> dict[str, Any] | None:
        try:
            answer = self._client.get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"Could not read {what}") from error
        return answer.get("Item")
