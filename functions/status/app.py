"""GET /v1/videos, /v1/videos/{video_id} and /v1/videos/{video_id}/content for the caller's tasks;
GET /v1/models and /v1/models/{model_id}: the catalogue."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.domain.models import ModelList, ModelObject, VideoDetail, VideoList
from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import (
    OWNER_ERRORS,
    SERVER_ERRORS,
    STRIP_PREFIXES,
    answer,
    caller,
    install_error_handlers,
    json_response,
    reads,
    refusal,
)
from sora_relay.runtime.container import current
from sora_relay.usecases.models import get_model, list_models
from sora_relay.usecases.read import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    get_video,
    list_videos,
    parse_limit,
    video_content_url,
)

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)

VIDEO_ID = (str, Field(description="The video's id (`video_` and 32 hex digits); any other value is a 404."))


@app.get(
    "/v1/videos",
    operation_id="listVideos",
    tags=["videos"],
    summary="List the caller's videos, newest first",
    description="Listing hands out no download links; read one video for its `download_url`.",
    responses={
        200: answer(VideoList, "One page of the caller's videos."),
        400: refusal(f"limit is not a whole number from 1 to {MAX_LIMIT}.", "invalid_value"),
        404: refusal("`after` names no video of the caller's (`param` is `after`).", "video_not_found"),
        **OWNER_ERRORS,
    },
)
@reads(
    query={
        "limit": (
            int,
            Field(
                DEFAULT_LIMIT,
                ge=1,
                le=MAX_LIMIT,
                description=f"How many videos (1 to {MAX_LIMIT}; {DEFAULT_LIMIT} when absent or empty).",
            ),
        ),
        "after": (
            str,
            Field(
                None,
                description="The `last_id` of the previous page; it must be one of the caller's own videos.",
            ),
        ),
    }
)
def list_route() -> Response:
    event = app.current_event
    limit = parse_limit(event.get_query_string_value("limit"))
    return json_response(
        200, list_videos(current(), caller(event), limit=limit, after=event.get_query_string_value("after"))
    )


@app.get(
    "/v1/videos/<video_id>",
    operation_id="getVideo",
    tags=["videos"],
    summary="Read one video",
    description=(
        "When the video is `completed`, `download_url` is a presigned link to the MP4, valid until"
        " `download_expires_at`. `timings` says when each stage was reached and `webhook` each"
        " attempt to deliver its event to `callback_url`."
    ),
    responses={
        200: answer(VideoDetail, "The video object, with its timings and webhook attempts."),
        404: refusal("No video with this id belongs to the caller.", "video_not_found"),
        **OWNER_ERRORS,
    },
)
@reads(path={"video_id": VIDEO_ID})
def get_route(video_id: str) -> Response:
    return json_response(200, get_video(current(), caller(app.current_event), video_id))


@app.get(
    "/v1/videos/<video_id>/content",
    operation_id="getVideoContent",
    tags=["videos"],
    summary="Download the MP4",
    description=(
        "A redirect to a presigned S3 URL of the MP4. Follow it without the API key: the link carries"
        " its own authority (GET of this one object, for a limited time)."
    ),
    responses={
        302: {
            "description": "The MP4 is at the URL in `Location`.",
            "headers": {
                "Location": {
                    "required": True,
                    "description": "A presigned S3 URL of the MP4.",
                    "schema": {"type": "string", "format": "uri"},
                }
            },
            "content": {},  # no body
        },
        404: refusal(
            "No such video of the caller's (`video_not_found`), or it is not `completed` (`video_not_ready`).",
            "video_not_found",
            "video_not_ready",
        ),
        **OWNER_ERRORS,
    },
)
@reads(path={"video_id": VIDEO_ID})
def content_route(video_id: str) -> Response:
    url = video_content_url(current(), caller(app.current_event), video_id)
    return Response(status_code=302, headers={"Location": url}, body="")


@app.get(
    "/v1/models",
    operation_id="listModels",
    tags=["models"],
    summary="List the catalogue's models, live first",
    description="`available` says whether this deployment can run the model (it holds a key for its provider).",
    responses={200: answer(ModelList, "Every model of the catalogue."), **SERVER_ERRORS},
)
def list_models_route() -> Response:
    return json_response(200, list_models(current()))


@app.get(
    "/v1/models/<model_id>",
    operation_id="getModel",
    tags=["models"],
    summary="Read one model",
    responses={
        200: answer(ModelObject, "The model object."),
        404: refusal("No model of the catalogue has this id.", "model_not_found"),
        **SERVER_ERRORS,
    },
)
@reads(path={"model_id": (str, Field(description="A model id of GET /v1/models."))})
def get_model_route(model_id: str) -> Response:
    return json_response(200, get_model(current(), model_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
