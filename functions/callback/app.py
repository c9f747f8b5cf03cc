"""POST /v1/callbacks/{provider}/{task_id}?token=...: a provider reports a result."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import STRIP_PREFIXES, install_error_handlers, json_response, request_body
from sora_relay.runtime.container import current
from sora_relay.usecases.record_push import record_callback

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)


@app.post("/v1/callbacks/<provider>/<task_id>")
def provider_callback(provider: str, task_id: str) -> Response:
    event = app.current_event
    body = request_body(event).encode()
    token = event.get_query_string_value("token")
    task, changed = record_callback(current(), provider, task_id, token, body, dict(event.headers or {}))
    return json_response(200, {"received": True, "changed": changed, "status": task.status.value})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
