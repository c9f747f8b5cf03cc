"""The API's Lambda authorizer (REQUEST): `Authorization: Bearer <key>` or `x-api-key: <key>`.

Answers API Gateway with the tenant's policy, usage identifier and context (tenant_id, key_id,
budget_microusd, models), a 403 policy for a disabled tenant, or a 401 for anything else.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger
from sora_relay.runtime.authorizer import handle


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
