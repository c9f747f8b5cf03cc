"""Use case: a submission from the SQS SubmitQueue, validated exactly like POST /v1/videos.

The message body is the same JSON object as the HTTP request. Its owner is the queue
(`sqs:<queue name>`): whoever may send to the queue is trusted by IAM, not by an API key, so
these tasks are not visible to any API key. Integrations hear about them on the event bus:
`Video Submission Accepted` (with the video object, so the task id) and then the usual
`Video Generation Completed/Failed`.

A redelivered message makes no second task: the message's `idempotency_key` attribute, or else
its SQS message id, goes through the same Idempotency-Key records as HTTP. A message that can
never succeed (invalid JSON, a bad field, a key reused with another body, the provider refusing
it) is reported as `Video Submission Rejected` with the same error object the API would answer,
and dropped. Our own failures (a table, a secret) raise, so SQS delivers the message again and
its redrive policy moves it to the dead-letter queue after the last try.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.adapters.eventbridge import BusEvent
from sora_relay.domain.create_request import parse_create_request
from sora_relay.domain.errors import ConfigurationError, SoraRelayError
from sora_relay.domain.models import VideoObject
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.idempotency import submit_once

ACCEPTED = "Video Submission Accepted"
REJECTED = "Video Submission Rejected"
KEY_ATTRIBUTE = "idempotency_key"
_RETRYABLE = frozenset({409, 500, 503})


def queue_owner(event_source_arn: str) -> str:
    return f"sqs:{event_source_arn.rsplit(':', 1)[-1]}"


def submit_message(
    deps: Deps,
    body: str,
    *,
    message_id: str,
    event_source_arn: str,
    idempotency_key: str | None = None,
    context: LambdaContext | None = None,
) -> VideoObject | None:
    """Submit one queued request; returns the video, or None when the message was rejected."""
    settings = deps.settings
    if not settings.public_base_url:
        raise ConfigurationError("PUBLIC_BASE_URL is required to take submissions from a queue")
    owner = queue_owner(event_source_arn)
    key = idempotency_key or message_id
    reference = {"message_id": message_id, "idempotency_key": key}
    logger.append_keys(message_id=message_id)
    try:
        request = parse_create_request(body, allow_loopback=settings.allow_loopback_urls)
        video = submit_once(
            deps, request, owner=owner, public_base_url=settings.public_base_url, key=key, context=context
        )
    except SoraRelayError as error:
        # Ours and transient: a table or secret failing (500), the provider busy with no dispatch
        # queue (503), or the same message being handled by another delivery right now (409).
        # Anything else would fail the same way again (the provider refusing our key, 502, has
        # already failed the task it made), so it is reported instead.
        if error.status_code in _RETRYABLE:
            raise
        logger.warning("Submission rejected", extra={"error_code": error.code, "param": error.param})
        metrics.add_metric(name="SubmissionRejected", unit="Count", value=1)
        deps.event_bus.publish(
            [
                BusEvent(
                    REJECTED,
                    {
                        **reference,
                        "status": error.status_code,
                        "error": {"code": error.code, "message": error.message, "param": error.param},
                    },
                )
            ]
        )
        return None
    logger.info("Submission accepted", extra={"task_id": video.id, "status": video.status.value})
    deps.event_bus.publish([BusEvent(ACCEPTED, {**reference, "video": video.model_dump(mode="json")})])
    return video
