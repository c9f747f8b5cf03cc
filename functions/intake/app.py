"""SQS SubmitQueue: submissions from integrations, validated like POST /v1/videos."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.intake import KEY_ATTRIBUTE, submit_message
from sora_relay.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    key = record.message_attributes[KEY_ATTRIBUTE]  # None when absent (Powertools' __getitem__)
    submit_message(
        record.body,
        message_id=record.message_id,
        event_source_arn=record.event_source_arn,
        idempotency_key=key.string_value if key else None,
        context=lambda_context,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
