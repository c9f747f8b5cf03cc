"""SQS ArchiveQueue: copy a finished video into S3 and complete its task."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.batch import EventType, Record, process_partial_response
from sora_relay.runtime.container import current
from sora_relay.usecases.archive import handle_archive_message


def record_handler(record: Record) -> None:
    attempt = int(record["attributes"]["ApproximateReceiveCount"])
    handle_archive_message(current(), record["body"], attempt=attempt, receipt_handle=record["receiptHandle"])


# A deferred copy (retried with backoff, or dead-lettered after the last attempt) is reported as a
# batch item failure: the message stays on the queue.
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event, record_handler, event_type=EventType.SQS, context=context)
