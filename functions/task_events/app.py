"""TasksTable stream: publish each terminal transition on the bus and queue the client's webhook."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.batch import EventType, process_partial_response
from sora_relay.runtime.container import current
from sora_relay.usecases.task_events import publish_transition


# A stream is ordered: the batch stops at a failed record, which is reported (batchItemFailures),
# and Lambda retries from it, so the records before it are not handled (and published) again.
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    deps = current()
    return process_partial_response(
        event,
        lambda record: publish_transition(deps, record),
        event_type=EventType.DynamoDBStreams,
        context=context,
        stop_at_first_failure=True,
    )
