"""Use case: accept a generation request and get it started at the provider.

With a dispatch queue configured (the deployed template has one) a provider that is rate limiting
or failing does not fail the request: the task stays `queued` and the dispatch function retries.
Without one, submit retries briefly in line and then fails the task with `provider_unavailable`.
Our own errors on the way to the provider (a table, a secret) are never the provider's refusal:
with a dispatch queue the task is queued for dispatch all the same; without one it fails with
`dispatch_failed`.

Once the task is stored the answer is always 202 with the video as a later GET shows it (OpenAI's
SDK retries 408, 409, 429 and 5xx, POST included, and sends no Idempotency-Key, so any of those
would make a second task, and after a provider's 5xx maybe bill a second video): `queued` when it
will still run, else `failed` with the recorded reason (`provider_outcome_unknown`,
`provider_auth_error`, `provider_protocol_error`, `provider_unavailable`, `dispatch_failed`). Only
the provider's refusal of the input itself stays an error, a 400 (`provider_rejected`,
`content_refused`), which the SDK does not retry. The MCP tools and the SQS intake share this, so
they report the same failed video.

A reference image sent as bytes (a multipart file, or a data URL) is stored under the task's own
prefix, `uploads/{task}/`; the provider gets a presigned link to it at each start attempt
(usecases/dispatch.py), so a task waiting in the dispatch queue never hands over a lapsed one.

A tenant's limits apply before anything is stored (usecases/budget.py): a model outside its list is
a 403, and the task's cost is reserved in its month's usage or the submit is a 429
`insufficient_quota` (with `x-should-retry: false`), before the upload and the task are stored and
the provider called. A retry of a submission whose task exists (the same Idempotency-Key) reserves
nothing more: the first attempt's reservation is the task's.
"""

from __future__ import annotations

from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.create_request import DEFAULT_SIZE, CreateVideoRequest
from sora_relay.domain.errors import (
    PROVIDER_REFUSALS,
    InsufficientQuota,
    InvalidRequest,
    ProviderUnavailable,
    SoraRelayError,
    StorageError,
    TaskNotQueued,
    TransitionRejected,
    Unprocessable,
    describe_cause,
    invites_retry,
)
from sora_relay.domain.models import VideoObject
from sora_relay.domain.reference_image import ImageUpload
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
    upload: ImageUpload | None = None,
    remixed_from: str | None = None,
    limits: TenantLimits | None = None,
) -> VideoObject:
    """`task_id`, when given, makes the submission idempotent in the table itself: a second
    submission with that id finds the first task instead of making another. `upload`: the
    reference image as bytes (a multipart file); a data URL in the request is one too. `limits`
    are the tenant's from the authorizer; without them they are read from the tenants table."""
    settings = deps.settings
    upload = upload or request.data_url_image()
    asked, model, seconds, size = choose_model(deps, request, upload=upload is not None)
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
        remixed_from=remixed_from,
    )
    if task_id is not None:
        task = task.model_copy(update={"task_id": task_id})
    month = _reserve(deps, owner, task, tenant, retry=task_id is not None)
    task = task.model_copy(update={"usage_month": month})
    try:
        if upload is not None:
            # Stored before the task: a task never names an image that is not there. An upload whose
            # task is never stored (a failure in between) expires with the bucket's uploads/ rule.
            key = f"uploads/{task.task_id}/input_reference.{upload.extension}"
            deps.video_store.put_upload(key, upload.data, content_type=upload.content_type)
            task = task.model_copy(update={"image_key": key, "image_content_type": upload.content_type})
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
            logger.info("Provider unavailable; task queued for dispatch", extra={"error_code": error.code})
            task = _queue_or_fail(deps, task, public_base_url, delay_seconds=error.retry_after or 0)
        except PROVIDER_REFUSALS as error:
            task = _refused(deps, task, error)  # start_generation failed the task and logged why
        except Exception as error:  # ours (storage, a secret): the dispatch function retries it
            logger.warning(
                "Could not start the task; queuing it for dispatch", extra={"cause": describe_cause(error)}
            )
            task = _queue_or_fail(deps, task, public_base_url)
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
        # Tried in line and still unavailable: the task fails with why, and the create answers it.
        task = _fail_now(deps, task, error, cause=error)
    except PROVIDER_REFUSALS as error:
        task = _refused(deps, task, error)
    except Exception as error:  # ours (storage, a secret), with no dispatch queue to retry it
        logger.warning("Could not start the task; failing it", extra={"cause": describe_cause(error)})
        reason = TaskNotQueued("The task could not be started on our side; submit it again")
        task = _fail_now(deps, task, reason, cause=error)
    return VideoObject.from_task(task)


def _refused(deps: Deps, task: Task, error: SoraRelayError) -> Task:
    """The task the provider's refusal failed, as a later GET shows it. A refusal whose status the
    OpenAI SDK would retry (its auth, its contract, an unknown outcome: 502s) is answered so, with
    202: the create did make a video, and a retry would make a second one. A 400 (the provider
    refused the input itself) stays the error: the SDK does not retry it, and it names the cause."""
    if not invites_retry(error.status_code):
        raise error
    return _as_stored(deps, task, error)


def _as_stored(deps: Deps, task: Task, error: SoraRelayError) -> Task:
    """The task as the table holds it after it failed for `error`; if the table cannot be read,
    the failure it recorded (fail_task has written it, or someone finished the task first)."""
    try:
        stored = deps.task_store.get(task.task_id)
    except Exception as read_error:  # the answer is a 202 all the same: the task exists
        logger.warning("Could not read the failed task back", extra={"cause": describe_cause(read_error)})
        stored = None
    return stored or task.model_copy(
        update={"status": Status.FAILED, "error_code": error.code, "error_message": error.message}
    )


def _fail_now(deps: Deps, task: Task, reason: SoraRelayError, *, cause: Exception) -> Task:
    """Fail the stored task for `reason` and answer it. If even that cannot be written, the task
    is answered as it stands (`queued`, 202): any error now would invite a retry into a second
    task, and the reconciler fails a task left `queued` at its deadline (`timeout`)."""
    try:
        return fail_task(deps, task.task_id, reason) or _as_stored(deps, task, reason)
    except Exception as error:
        logger.error(
            "Could not fail the stored task; the reconciler will",
            extra={"cause": describe_cause(error), "reason": describe_cause(cause)},
        )
        metrics.add_metric(name="SubmitFailNotRecorded", unit="Count", value=1)
        return task


def _reserve(deps: Deps, owner: str, task: Task, tenant: TenantLimits, *, retry: bool) -> str | None:
    """The month the task's cost is reserved in. Over the budget, a retry whose task exists
    carries on without a reservation of its own (the task holds one); anything else is the 429."""
    try:
        return budget.reserve(deps, owner, task, tenant)
    except InsufficientQuota:
        if retry and deps.task_store.get(task.task_id) is not None:
            return None
        raise


def _queue_or_fail(deps: Deps, task: Task, public_base_url: str, *, delay_seconds: float = 0) -> Task:
    """Hand the stored task to the dispatch queue. If the queue cannot take it, fail the task now
    (`dispatch_failed`) and answer it, rather than a 5xx that the client's SDK would retry into a
    second task while this one sat `queued` until the reconciler's deadline."""
    try:
        queue_dispatch(deps, task.task_id, public_base_url, delay_seconds=delay_seconds)
    except Exception as error:
        logger.error(
            "Could not queue the task for dispatch; failing it", extra={"cause": describe_cause(error)}
        )
        metrics.add_metric(name="DispatchNotQueued", unit="Count", value=1)
        reason = TaskNotQueued("The task could not be queued for dispatch; submit it again")
        return _fail_now(deps, task, reason, cause=error)
    return task


def choose_model(
    deps: Deps, request: CreateVideoRequest, *, upload: bool = False
) -> tuple[str, ModelEntry, int, str]:
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
        image=request.image_field if request.image_url or upload else None,
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
        "image_key",
        "remixed_from",
    )
    if any(getattr(existing, name) != getattr(task, name) for name in same):
        raise Unprocessable(
            "This idempotency key was used with a different request",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return existing
