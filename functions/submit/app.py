"""POST /v1/videos: accept a generation request and start it at the provider."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.domain.models import parse_create_request
from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import (
    STRIP_PREFIXES,
    caller,
    install_error_handlers,
    json_response,
    public_base_url,
    request_body,
)
from sora_relay.runtime.container import current
from sora_relay.usecases.idempotency import HEADER, submit_once

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)


@app.post("/v1/videos")
def create_video() -> Response:
    event = app.current_event
    request = parse_create_request(request_body(event), allow_loopback=current().settings.allow_loopback_urls)
    video = submit_once(
        current(),
        request,
        owner=caller(event),
        public_base_url=public_base_url(event),
        key=event.headers.get(HEADER),
        context=app.lambda_context,
    )
    return json_response(202, video)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
