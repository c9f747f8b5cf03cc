"""POST /mcp: the MCP server (the seed's Sora tools and our own), stateless Streamable HTTP;
GET and DELETE /mcp answer 405."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay_mcp.lambda_endpoint import handle


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle(event, context)
