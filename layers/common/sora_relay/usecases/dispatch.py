"""Use case: get a task started at the provider, now or, while it is unavailable, from a queue.

Submit makes one attempt. When the provider cannot have accepted it (a 429, a connection never
made) the task stays `queued` and goes to the dispatch queue. After a 5xx or a timeout the provider
may have started the job, so the create is never sent again (it could bill twice): the task fails
with `provider_outcome_unknown` (shared/providers/README.md, rule 8). The dispatch function makes one attempt per delivery and waits between
deliveries with exponential backoff and equal jitter (a wait drawn from the upper half of the
capped exponential step), honouring `Retry-After`. On the last attempt the task becomes `failed`
with `provider_unavailable`, and the message goes on to the dead-letter queue.

Only the provider's final word (`PROVIDER_REFUSALS`: its 4xx, an answer that breaks its contract,
or an outcome we cannot know) fails the task at once. Our own errors (a table, a secret that is missing or cannot be
read) leave the task `queued` and the message on the queue, retried the same way; on the last
attempt they fail the task with `dispatch_failed`, so nothing accepted stays open for ever.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass

from sora_relay.domain.errors import (
    PROVIDER_REFUSALS,
    Deferred,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    SoraRelayError,
    StorageError,
    TransitionRejected,
    describe_cause,
)
from sora_relay.domain.provider import GenerationRequest
from sora_relay.domain.task import Status, Task, now_millis
from sora_relay.domain.tokens import callback_token
from sora_relay.observability import logger, metrics
from sora_relay.usecases import budget, retry
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.retry import with_backoff

# The start write, after the provider has the job: tries, and the first wait (doubling, jittered).
START_WRITE_ATTEMPTS = 4
START_WRITE_BASE_DELAY_S = 0.2


def callback_url_for(public_base_url: str, provider_name: str, task_id: str, key: str) -> str:
    token = callback_token(task_id, key)
    return f"{public_base_url}/v1/callbacks/{provider_name}/{task_id}?token={token}"


def fail_task(deps: Deps, task_id: str, error: SoraRelayError) -> Task | None:
    """Fail the task for `error`; this transition happens once, so its reservation in the tenant's
    budget goes back here once too, unless the provider has the task or may have it."""
    try:
        failed = deps.task_store.fail(task_id, code=error.code, message=error.message)
    except TransitionRejected:
        return None  # already finished by someone else
    budget.release_failed(deps, failed, error)
    return failed


def start_generation(
    deps: Deps, task: Task, public_base_url: str, *, attempts: int = 1, budget_seconds: float = 0
) -> Task:
    """Submit `task` to its provider and record `in_progress` with the provider's task id.

    A provider refusal (`PROVIDER_REFUSALS`) fails the task and is raised. Anything else is
    raised as is and leaves the task `queued`: ProviderUnavailable and our own errors (storage, a
    secret), which the caller retries or queues.
    """
    settings = deps.settings
    provider = deps.provider(task.provider)
    generation = GenerationRequest(
        prompt=task.prompt,
        model=deps.catalogue.require(task.model),
        seconds=task.seconds,
        size=task.size,
        image_url=task.image_url or _upload_link(deps, task),
    )
    callback_url = callback_url_for(public_base_url, provider.name, task.task_id, deps.callback_key())
    try:
        provider_task_id = with_backoff(
            lambda: provider.submit(generation, callback_url=callback_url),
            attempts=attempts,
            budget_seconds=budget_seconds,
            base_delay=settings.provider_retry_base_delay_seconds,
        )
    except ProviderUnavailable as error:
        if error.resend_safe:
            raise  # nothing was accepted: the caller may try again later
        unknown = ProviderOutcomeUnknown(
            f"{error.message}, while it was taking the task; it was not sent again, since a second "
            "request could start and bill a second video. Submit again to retry."
        )
        fail_task(deps, task.task_id, unknown)
        metrics.add_metric(name="SubmitOutcomeUnknown", unit="Count", value=1)
        logger.warning("Provider failed while taking the task; not resent", extra={"cause": error.message})
        raise unknown from error
    except PROVIDER_REFUSALS as error:
        fail_task(deps, task.task_id, error)
        metrics.add_metric(name="SubmitFailed", unit="Count", value=1)
        logger.warning("Provider refused the task", extra={"error_code": error.code})
        raise
    started = _record_start(deps, task, provider_task_id)
    if started is None:
        # The callback still finishes the task from `queued`; raising here would only make the
        # client submit it a second time.
        logger.warning("Could not record in_progress; the provider's push will finish the task")
        metrics.add_metric(name="StartNotRecorded", unit="Count", value=1)
        return task
    metrics.add_metric(name="TaskStarted", unit="Count", value=1)
    logger.info("Task started at the provider", extra={"provider_task_id": provider_task_id})
    return started


def _record_start(deps: Deps, task: Task, provider_task_id: str) -> Task | None:
    """`in_progress` with the provider's id, or what a fast callback made of the task; None when the
    write kept failing. The provider has the job: without its id on the task a lost push leaves
    the reconciler nothing to look up, so the write is worth a few more tries."""
    for attempt in range(1, START_WRITE_ATTEMPTS + 1):
        try:
            return deps.task_store.start(task.task_id, provider_task_id)
        except TransitionRejected:
            return deps.task_store.get(task.task_id) or task  # a fast callback got there first
        except StorageError:
            if attempt < START_WRITE_ATTEMPTS:
                time.sleep(retry.backoff_delay(attempt, base=START_WRITE_BASE_DELAY_S, cap=1.0))
    return None


def _upload_link(deps: Deps, task: Task) -> str | None:
    """A fresh presigned link to the client's uploaded reference image (made per attempt: a task
    waiting in the dispatch queue never hands the provider a lapsed one). Our own object, so the
    outbound URL checks, which guard what a client names, do not apply: the provider fetches it."""
    if not task.image_key:
        return None
    return deps.video_store.object_link(
        task.image_key,
        content_type=task.image_content_type or "application/octet-stream",
        ttl_seconds=deps.settings.presigned_url_ttl_seconds,
    )


def queue_dispatch(deps: Deps, task_id: str, public_base_url: str, *, delay_seconds: float = 0) -> None:
    deps.dispatch_queue.send(
        {"task_id": task_id, "public_base_url": public_base_url}, delay_seconds=delay_seconds
    )
    metrics.add_metric(name="DispatchQueued", unit="Count", value=1)


@dataclass(frozen=True)
class DispatchOutcome:
    action: str  # started | skipped | failed | retry | gave_up
    delay_seconds: float = 0
    reason: str = ""  # why a retry or a give-up: the DispatchDeferred message


def backoff_delay(deps: Deps, attempt: int, retry_after: float | None) -> float:
    settings = deps.settings
    return retry.backoff_delay(
        attempt,
        base=settings.dispatch_base_delay_seconds,
        cap=settings.dispatch_max_delay_seconds,
        retry_after=retry_after,
    )


def dispatch_task(deps: Deps, task_id: str, public_base_url: str, *, attempt: int) -> DispatchOutcome:
    """One delivery of a dispatch message; `attempt` is SQS's receive count (1 for the first).

    The delivery claims the task's start first (SQS may hand the same message out twice at once,
    and two creates would be two billed jobs); a delivery that leaves the task `queued` gives the
    claim back, so the next one can take it at once."""
    logger.append_keys(task_id=task_id)
    task = deps.task_store.get(task_id)
    if task is None or task.status is not Status.QUEUED:
        return DispatchOutcome("skipped")  # started, finished or gone: a repeat delivery
    claim = uuid.uuid4().hex[:16]
    lease_until_ms = now_millis() + deps.settings.dispatch_lease_seconds * 1000
    try:
        task = deps.task_store.claim_dispatch(task_id, claim, lease_until_ms=lease_until_ms)
    except TransitionRejected:
        return _claimed_elsewhere(deps, task_id)
    except StorageError as error:  # nothing is held yet: retried like any error of ours
        return _our_error(deps, task_id, error, attempt=attempt)
    outcome = _start(deps, task, public_base_url, attempt=attempt)
    if outcome.action == "retry":
        with contextlib.suppress(TransitionRejected, StorageError):  # else it lapses with its lease
            deps.task_store.release_dispatch(task_id, claim)
    return outcome


def _claimed_elsewhere(deps: Deps, task_id: str) -> DispatchOutcome:
    """Another delivery holds the start: this copy comes back once that claim has lapsed."""
    current = deps.task_store.get(task_id)
    if current is None or current.status is not Status.QUEUED:
        return DispatchOutcome("skipped")
    lease_left = ((current.dispatch_lease_ms or 0) - now_millis()) / 1000
    logger.info(
        "Another delivery is starting the task; kept for later", extra={"lease_left_s": round(lease_left)}
    )
    return DispatchOutcome("retry", max(lease_left, 0) + 1, "another delivery is starting the task")


def _start(deps: Deps, task: Task, public_base_url: str, *, attempt: int) -> DispatchOutcome:
    task_id = task.task_id
    try:
        start_generation(deps, task, public_base_url)
    except ProviderUnavailable as error:
        if attempt >= deps.settings.dispatch_max_attempts:
            # The client got 202 `queued`: the failed transition reaches its webhook via the stream.
            fail_task(
                deps, task_id, ProviderUnavailable(f"{error.message}; gave up after {attempt} attempts")
            )
            metrics.add_metric(name="DispatchGaveUp", unit="Count", value=1)
            logger.warning(
                "Provider still unavailable; task failed", extra={"attempts": attempt, "cause": error.message}
            )
            return DispatchOutcome("gave_up", reason="provider unavailable on the last attempt")
        delay = backoff_delay(deps, attempt, error.retry_after)
        logger.info(
            "Provider unavailable; will retry",
            extra={"attempt": attempt, "delay_s": round(delay, 1), "cause": error.message},
        )
        return DispatchOutcome("retry", delay, "provider unavailable")
    except PROVIDER_REFUSALS:
        return DispatchOutcome("failed")  # refused for good; start_generation recorded why
    except Exception as error:  # ours (storage, a secret): retried like an unavailable provider
        return _our_error(deps, task_id, error, attempt=attempt)
    return DispatchOutcome("started")


def _our_error(deps: Deps, task_id: str, error: Exception, *, attempt: int) -> DispatchOutcome:
    cause = describe_cause(error)
    kind = error.code if isinstance(error, SoraRelayError) else type(error).__name__
    if attempt >= deps.settings.dispatch_max_attempts:
        # Only the kind of error reaches the client; the cause (AWS's answer) stays in the log.
        message = f"The task could not be started after {attempt} attempts ({kind})"
        # A task's failure reason, not an answer to a request: recorded, never raised.
        with contextlib.suppress(TransitionRejected):
            failed = deps.task_store.fail(task_id, code="dispatch_failed", message=message)
            budget.release_failed(deps, failed)
        metrics.add_metric(name="DispatchFailed", unit="Count", value=1)
        logger.error("Could not dispatch the task; task failed", extra={"attempts": attempt, "cause": cause})
        return DispatchOutcome("gave_up", reason=f"{kind} on the last attempt")
    delay = backoff_delay(deps, attempt, None)
    logger.warning(
        "Could not dispatch the task; will retry",
        extra={"attempt": attempt, "delay_s": round(delay, 1), "cause": cause},
    )
    return DispatchOutcome("retry", delay, kind)


class DispatchDeferred(Deferred):
    """The message stays on the queue: retried after its delay, or moved on to the DLQ."""


def dispatch_message(deps: Deps, body: str, *, attempt: int, receipt_handle: str) -> DispatchOutcome:
    """Handle one dispatch queue message; raises DispatchDeferred to leave it on the queue."""
    message = json.loads(body)
    outcome = dispatch_task(deps, message["task_id"], message["public_base_url"], attempt=attempt)
    if outcome.action == "retry":
        deps.dispatch_queue.retry_later(receipt_handle, outcome.delay_seconds)
        raise DispatchDeferred(f"{outcome.reason}; next attempt in {outcome.delay_seconds:.0f} s")
    if outcome.action == "gave_up":
        raise DispatchDeferred(f"{outcome.reason}; to the dead-letter queue")
    return outcome
