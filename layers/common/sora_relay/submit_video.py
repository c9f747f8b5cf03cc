"""Use case: accept a generation request and get it started at the provider.

With a dispatch queue configured (the deployed template has one) a provider that is rate limiting
or failing does not fail the request: the task stays `queued` and the dispatch function retries.
Without one, submit retries briefly in line and then answers 503.
"""

from __future__ import annotations

from sora_relay import services
from sora_relay.dispatch import fail_task, queue_dispatch, start_generation
from sora_relay.errors import ProviderUnavailable
from sora_relay.models import CreateVideoRequest, VideoObject
from sora_relay.observability import logger, metrics
from sora_relay.settings import get_settings
from sora_relay.task import Task


def submit_video(request: CreateVideoRequest, *, owner: str, public_base_url: str) -> VideoObject:
    settings = get_settings()
    task = Task.new(
        owner=owner,
        model=request.model,
        prompt=request.prompt,
        seconds=request.video_seconds,
        size=request.size,
        image_url=request.image_url,
        callback_url=request.callback_url,
        provider=settings.provider_name,
        retention_days=settings.task_retention_days,
    )
    services.task_store().create(task)
    logger.append_keys(task_id=task.task_id)
    logger.info("Task accepted", extra={"prompt_chars": len(task.prompt), "model": task.model})
    metrics.add_metric(name="TaskAccepted", unit="Count", value=1)

    if settings.dispatch_queue_url:
        try:
            task = start_generation(task, public_base_url)
        except ProviderUnavailable as error:
            # Accepted all the same: the dispatch function keeps trying within the provider's limits.
            queue_dispatch(task.task_id, public_base_url, delay_seconds=error.retry_after or 0)
            logger.info("Provider unavailable; task queued for dispatch", extra={"error_code": error.code})
        return VideoObject.from_task(task)

    try:
        task = start_generation(
            task,
            public_base_url,
            attempts=settings.provider_max_attempts,
            budget_seconds=settings.provider_retry_budget_seconds,
        )
    except ProviderUnavailable as error:
        fail_task(task.task_id, error)  # the client hears 503 now; the task still records why
        raise
    return VideoObject.from_task(task)
