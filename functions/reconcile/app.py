"""Scheduled (EventBridge Scheduler): finish tasks whose callback was lost or whose copy failed."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.reconcile import reconcile


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return reconcile()
