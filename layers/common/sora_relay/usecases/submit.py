"""Use case: accept a generation request and get it started at the provider.

With a dispatch queue configured (the deployed template has one) a provider that is rate limiting
or failing does not fail the request: the task stays `queued` and the dispatch function retries.
Without one, submit retries briefly in line and then answers 503. Our own errors on the way to the
provider (a table, a secret) are never the provider's refusal: with a dispatch queue the task is
queued for dispatch all the same; without one the error is raised (a 5xx) and the task stays
`queued`, so a retry with the same Idempotency-Key carries on with it.

A tenant's limits apply before anything is stored (usecases/budget.py): a model outside its list is
a 403, and the task's cost is reserved in its month's usage or the submit is a 429
`insufficient_quota`, before the task is stored and the provider called. A retry of a submission
whose task exists (the same Idempotency-Key) reserves nothing more: the first attempt's reservation
is the task's.
"""

from __future__ import annotations

from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.errors import (
    PROVIDER_REFUSALS,
    InsufficientQuota,
    InvalidRequest,
    ProviderUnavailable,
    StorageError,
    TransitionRejected,
    Unprocessable,
    describe_cause,
)
from sora_relay.domain.models import DEFAULT_SIZE, CreateVideoRequest, VideoObject
from sora_relay.domain.task import Status, Task
from sora_relay.observability import logger, metrics
from sora_relay.usecases import budget
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.dispatch import fail_task, queue_dispatch, start_generation


def submit_video(
    deps: Deps,
    request: CreateVideoRequest,
    *,
    owner: str,
    public_base_url: str,
    task_id: str | None = None,
    limits: TenantLimits | None = None,
) -> VideoObject:
    """`task_id`, when given, makes the submission idempotent in the table itself: a second
    submission with that id finds the first task instead of making another. `limits` are the
    tenant's from the authorizer; without them they are read from the tenants table."""
    settings = deps.settings
    asked, model, seconds, size = choose_model(deps, request)
    tenant = budget.limits_for(deps, owner, limits)
    budget.check_model(tenant, model.id)
    task = Task.new(
        owner=owner,
        model=model.id,
        requested_model=asked,
        prompt=request.prompt,
        seconds=seconds,
        size=size,
        image_url=request.image_url,
        callback_url=request.callback_url,
        webhook_format=request.webhook_format,
        provider=model.provider,
        retention_days=settings.task_retention_days,
        cost_microusd=model.price_microusd(seconds),
    )
    if task_id is not None:
        task = task.model_copy(update={"task_id": task_id})
    month = _reserve(deps, owner, task, tenant, retry=task_id is not None)
    task = task.model_copy(update={"usage_month": month})
    try:
        deps.task_store.create(task)
    except TransitionRejected:
        # This attempt's reservation goes back: the earlier attempt's is the task's.
        budget.give_back(deps, owner, month, task.cost_microusd)
        existing = _earlier_attempt(deps, task)
        if existing.status is not Status.QUEUED or existing.provider_task_id:
            return VideoObject.from_task(existing)
        task = existing  # an earlier attempt stopped before the provider had it: carry on
    except Exception:
        budget.give_back(deps, owner, month, task.cost_microusd)
        raise
    logger.append_keys(task_id=task.task_id)
    logger.info("Task accepted", extra={"prompt_chars": len(task.prompt), "model": task.model})
    metrics.add_metric(name="TaskAccepted", unit="Count", value=1)

    if settings.dispatch_queue_url:
        try:
            task = start_generation(deps, task, public_base_url)
        except ProviderUnavailable as error:
            # Accepted all the same: the dispatch function keeps trying within the provider's limits.
            queue_dispatch(deps, task.task_id, public_base_url, delay_seconds=error.retry_after or 0)
            logger.info("Provider unavailable; task queued for dispatch", extra={"error_code": error.code})
        except PROVIDER_REFUSALS:
            raise  # start_generation failed the task and logged why
        except Exception as error:  # ours (storage, a secret): the dispatch function retries it
            queue_dispatch(deps, task.task_id, public_base_url)
            logger.warning(
                "Could not start the task; queued for dispatch", extra={"cause": describe_cause(error)}
            )
        return VideoObject.from_task(task)

    try:
        task = start_generation(
            deps,
            task,
            public_base_url,
            attempts=settings.provider_max_attempts,
            budget_seconds=settings.provider_retry_budget_seconds,
        )
    except ProviderUnavailable as error:
        fail_task(deps, task.task_id, error)  # the client hears 503 now; the task still records why
        raise
    return VideoObject.from_task(task)


def _reserve(deps: Deps, owner: str, task: Task, tenant: TenantLimits, *, retry: bool) -> str | None:
    """The month the task's cost is reserved in. Over the budget, a retry whose task exists
    carries on without a reservation of its own (the task holds one); anything else is the 429."""
    try:
        return budget.reserve(deps, owner, task, tenant)
    except InsufficientQuota:
        if retry and deps.task_store.get(task.task_id) is not None:
            return None
        raise


def choose_model(deps: Deps, request: CreateVideoRequest) -> tuple[str, ModelEntry, int, str]:
    """The model asked for, the live model that serves it, and the seconds and size it will make.

    Everything is checked against the serving model before anything is stored; each 400 names
    its field and what the model offers.
    """
    asked = request.model or deps.settings.default_model
    model = deps.catalogue.resolve(asked, deps.model_aliases)
    if not deps.provider_available(model.provider):
        ready = ", ".join(
            entry.id for entry in deps.catalogue.live() if deps.provider_available(entry.provider)
        )
        raise InvalidRequest(
            f"model {asked!r} is not available in this deployment (no key for its provider, "
            f"{model.provider}); available: {ready or 'none'}",
            param="model",
            code="model_unavailable",
        )
    seconds = request.video_seconds or model.default_seconds
    size = request.size or (DEFAULT_SIZE if DEFAULT_SIZE in model.sizes else model.default_size)
    model.check(
        seconds=seconds,
        seconds_field=request.seconds_field,
        size=size,
        image=request.image_field if request.image_url else None,
    )
    return asked, model, seconds, size


def _earlier_attempt(deps: Deps, task: Task) -> Task:
    """The task an earlier attempt of the same submission made, if it was the same request."""
    existing = deps.task_store.get(task.task_id)
    if existing is None or existing.owner != task.owner:
        raise StorageError("Could not store the task")
    same = (
        "model",
        "requested_model",
        "prompt",
        "seconds",
        "size",
        "image_url",
        "callback_url",
        "webhook_format",
    )
    if any(getattr(existing, name) != getattr(task, name) for name in same):
        raise Unprocessable(
            "This idempotency key was used with a different request",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return existing
