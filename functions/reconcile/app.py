"""Scheduled (EventBridge Scheduler): settle tasks whose callback was lost or whose copy stalled."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.container import current
from sora_relay.usecases.reconcile import reconcile


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return reconcile(current(), remaining_ms=context.get_remaining_time_in_millis)
