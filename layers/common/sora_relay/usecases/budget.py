"""Use case: a tenant's limits on what it submits (its models, its monthly budget), and its usage.

A submission reserves its expected cost (the catalogue's price for its seconds) in the tenant's
month before the task is stored and before the provider hears of it; a reservation that would pass
the budget is refused (429 `insufficient_quota`). The reservation is kept once the provider has the
task, and also when the provider failed or fell silent while taking it (`provider_outcome_unknown`:
it may have started, and billed, the video). It is given back when the task fails before the
provider took it: the provider refused it, it stayed unavailable through every dispatch attempt, or
our own errors kept it from being sent. A task given back is one that cost nothing upstream.

Where the limits come from: the authorizer's context on API requests (`TenantLimits.from_context`);
otherwise (SQS intake, MCP) the tenant item in the tenants table, where a missing item means no
limit. Without a tenants table configured nothing is counted.
"""

from __future__ import annotations

from sora_relay.adapters.usage import OverBudget, Usage
from sora_relay.domain.budget import TenantLimits, UsageObject, month_of, usd
from sora_relay.domain.errors import (
    InsufficientQuota,
    PermissionDenied,
    ProviderOutcomeUnknown,
    SoraRelayError,
    describe_cause,
)
from sora_relay.domain.task import Task
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps


def limits_for(deps: Deps, owner: str, given: TenantLimits | None) -> TenantLimits:
    """The limits the authorizer gave, or the tenant item's; none for an owner with no tenant item."""
    if given is not None:
        return given
    if not deps.settings.tenants_table:
        return TenantLimits()
    return deps.usage_store.limits(owner) or TenantLimits()


def check_model(limits: TenantLimits, model_id: str) -> None:
    """403, not 400: the request is valid and the model exists (GET /v1/models lists it); this
    tenant is not allowed it, which the OpenAI SDK raises as PermissionDeniedError and never retries."""
    if not limits.allows(model_id):
        raise PermissionDenied(
            f"model {model_id!r} is not enabled for this tenant; it may use: {', '.join(sorted(limits.models))}",
            param="model",
            code="model_not_allowed",
        )


def reserve(deps: Deps, owner: str, task: Task, limits: TenantLimits) -> str | None:
    """Count the task's cost in the month it is accepted (its `created_ms`); that month, or None
    when nothing is counted. Over the budget: InsufficientQuota, and nothing is counted."""
    if not deps.settings.tenants_table or task.cost_microusd is None:
        return None
    month = month_of(task.created_ms)
    try:
        deps.usage_store.reserve(owner, month, task.cost_microusd, budget=limits.budget_microusd)
    except OverBudget as refused:
        metrics.add_metric(name="SubmitOverBudget", unit="Count", value=1)
        logger.info("Submission over the tenant's budget", extra={"month": month, "cost": task.cost_microusd})
        raise InsufficientQuota(
            _over_budget(task.cost_microusd, limits.budget_microusd or 0, refused.usage, month)
        ) from None
    return month


def _over_budget(cost: int, budget: int, usage: Usage, month: str) -> str:
    left = max(budget - usage.spent_microusd, 0)
    return (
        f"You exceeded your current quota: this video costs ${usd(cost):.2f} and ${usd(left):.2f} of this"
        f" tenant's ${usd(budget):.2f} budget for {month} (UTC) is left. The budget renews on the 1st."
    )


def give_back(deps: Deps, owner: str, month: str | None, cost: int | None) -> None:
    """Return a reservation. Never raises: a failure to give back costs the tenant budget, never us
    an overspend, and must not change the answer the client gets (the provider's refusal)."""
    if month is None or cost is None:
        return
    try:
        released = deps.usage_store.release(owner, month, cost)
    except SoraRelayError as error:
        logger.warning("Could not give a reservation back", extra={"cause": describe_cause(error)})
        metrics.add_metric(name="UsageNotReleased", unit="Count", value=1)
        return
    if not released:
        logger.warning("The month's usage does not hold this reservation", extra={"month": month})


def release_failed(deps: Deps, task: Task, error: SoraRelayError | None = None) -> None:
    """A task just failed (by our own transition, so once): its reservation goes back unless the
    provider has it or may have it (`provider_outcome_unknown`)."""
    if task.provider_task_id or isinstance(error, ProviderOutcomeUnknown):
        return
    give_back(deps, task.owner, task.usage_month, task.cost_microusd)


def usage_of(deps: Deps, tenant_id: str, month: str, limits: TenantLimits | None) -> UsageObject:
    """The tenant's spend and count in `month`, with its budget (null: no limit)."""
    budget = limits_for(deps, tenant_id, limits).budget_microusd
    usage = deps.usage_store.read(tenant_id, month) if deps.settings.tenants_table else Usage()
    return UsageObject.of(
        tenant_id, month, spent_microusd=usage.spent_microusd, count=usage.count, budget_microusd=budget
    )
