"""SQS DispatchQueue: start queued tasks at the provider once it accepts them again."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.batch import EventType, Record, process_partial_response
from sora_relay.runtime.container import current
from sora_relay.usecases.dispatch import dispatch_message


def record_handler(record: Record) -> None:
    attempt = int(record["attributes"]["ApproximateReceiveCount"])
    dispatch_message(current(), record["body"], attempt=attempt, receipt_handle=record["receiptHandle"])


# A batch whose every message is deferred is still a normal answer, not a function error.
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event, record_handler, event_type=EventType.SQS, context=context)
