"""SQS WebhookQueue: deliver signed webhooks to clients, on a retry schedule of about 24 h."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.deliver_webhook import deliver_message
from sora_relay.observability import logger, metrics

# A batch whose every message is deferred is still a normal answer, not a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    deliver_message(record.body, receipt_handle=record.receipt_handle)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
