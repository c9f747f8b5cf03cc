"""SQS SubmitQueue: submissions from integrations, validated like POST /v1/videos."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.batch import EventType, Record, process_partial_response
from sora_relay.runtime.container import current
from sora_relay.usecases.intake import KEY_ATTRIBUTE, submit_message


def record_handler(record: Record, lambda_context: LambdaContext | None = None) -> None:
    key = record["messageAttributes"].get(KEY_ATTRIBUTE)  # None when absent
    submit_message(
        current(),
        record["body"],
        message_id=record["messageId"],
        event_source_arn=record["eventSourceARN"],
        idempotency_key=key["stringValue"] if key else None,
        context=lambda_context,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Powertools hands the record handler the invocation's context (it takes `lambda_context`).
    return process_partial_response(event, record_handler, event_type=EventType.SQS, context=context)
