"""GET /v1/videos, /v1/videos/{video_id} and /v1/videos/{video_id}/content for the caller's tasks;
GET /v1/models and /v1/models/{model_id}: the catalogue."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import STRIP_PREFIXES, caller, install_error_handlers, json_response
from sora_relay.runtime.container import current
from sora_relay.usecases.models import get_model, list_models
from sora_relay.usecases.read import get_video, list_videos, parse_limit, video_content_url

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)


@app.get("/v1/videos")
def list_route() -> Response:
    event = app.current_event
    limit = parse_limit(event.get_query_string_value("limit"))
    return json_response(
        200, list_videos(current(), caller(event), limit=limit, after=event.get_query_string_value("after"))
    )


@app.get("/v1/videos/<video_id>")
def get_route(video_id: str) -> Response:
    return json_response(200, get_video(current(), caller(app.current_event), video_id))


@app.get("/v1/videos/<video_id>/content")
def content_route(video_id: str) -> Response:
    url = video_content_url(current(), caller(app.current_event), video_id)
    return Response(status_code=302, headers={"Location": url}, body="")


@app.get("/v1/models")
def list_models_route() -> Response:
    return json_response(200, list_models(current()))


@app.get("/v1/models/<model_id>")
def get_model_route(model_id: str) -> Response:
    return json_response(200, get_model(current(), model_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
