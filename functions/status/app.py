"""GET /v1/videos, /v1/videos/{video_id} and /v1/videos/{video_id}/content, DELETE
/v1/videos/{video_id} for the caller's tasks; GET /v1/models and /v1/models/{model_id}: the catalogue;
GET /v1/usage: the tenant's month."""

from typing import Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.domain.budget import UsageObject, parse_month
from sora_relay.domain.models import DeletedVideo, ModelList, ModelObject, VideoDetail, VideoList
from sora_relay.domain.task import now_millis
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
    tenant_limits,
)
from sora_relay.runtime.container import current
from sora_relay.usecases.budget import usage_of
from sora_relay.usecases.delete import delete_video
from sora_relay.usecases.models import get_model, list_models
from sora_relay.usecases.read import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_POLL_AFTER_MS,
    MIN_POLL_AFTER_MS,
    list_videos,
    parse_limit,
    parse_order,
    parse_variant,
    read_video,
    video_content_url,
)

POLL_AFTER = "openai-poll-after-ms"

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)

VIDEO_ID = (str, Field(description="The video's id (`video_` and 32 hex digits); any other value is a 404."))


@app.get(
    "/v1/videos",
    operation_id="listVideos",
    tags=["videos"],
    summary="List the caller's videos, newest first (or oldest first)",
    description=(
        "A completed row carries its presigned `thumbnail_url` but no download link; read one video"
        " for its `download_url`. Deleted videos are left out. The next page is `after=last_id` while `has_more` (OpenAI's cursor page)."
    ),
    responses={
        200: answer(VideoList, "One page of the caller's videos."),
        400: refusal(
            f"limit is not a whole number from 1 to {MAX_LIMIT}, or order is not asc or desc.",
            "invalid_value",
        ),
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
        "order": (
            str,
            Field(
                "desc",
                pattern="^(asc|desc)$",
                description="`desc` (newest first, when absent or empty) or `asc` (oldest first).",
            ),
        ),
    }
)
def list_route() -> Response:
    event = app.current_event
    limit = parse_limit(event.get_query_string_value("limit"))
    order = parse_order(event.get_query_string_value("order"))
    after = event.get_query_string_value("after")
    return json_response(200, list_videos(current(), caller(event), limit=limit, after=after, order=order))


@app.get(
    "/v1/videos/<video_id>",
    operation_id="getVideo",
    tags=["videos"],
    summary="Read one video",
    description=(
        "When the video is `completed`, `download_url` is a presigned link to the MP4, valid until"
        " `download_expires_at`, and `thumbnail_url` one to its thumbnail (when one was drawn). `timings` says when each stage was reached and `webhook` each"
        " attempt to deliver its event to `callback_url`. While it is `queued` or `in_progress` the"
        " answer carries"
        f" `{POLL_AFTER}`: a tenth of the time the video has waited so far, from"
        f" {MIN_POLL_AFTER_MS} to {MAX_POLL_AFTER_MS} ms (OpenAI's SDK `poll` sleeps that long)."
    ),
    responses={
        200: {
            **answer(VideoDetail, "The video object, with its timings and webhook attempts."),
            "headers": {
                POLL_AFTER: {
                    "required": False,
                    "description": "While the video is open: milliseconds to wait before polling again.",
                    "schema": {"type": "integer", "minimum": MIN_POLL_AFTER_MS, "maximum": MAX_POLL_AFTER_MS},
                }
            },
        },
        404: refusal("No video with this id belongs to the caller (or it was deleted).", "video_not_found"),
        **OWNER_ERRORS,
    },
)
@reads(path={"video_id": VIDEO_ID})
def get_route(video_id: str) -> Response:
    video, poll_after = read_video(current(), caller(app.current_event), video_id)
    headers = {POLL_AFTER: str(poll_after)} if poll_after is not None else None
    return json_response(200, video, headers)


@app.delete(
    "/v1/videos/<video_id>",
    operation_id="deleteVideo",
    tags=["videos"],
    summary="Delete a finished video's files",
    description=(
        "The MP4 and every other file of the video (previews, the uploaded reference image) are"
        " deleted; the task is kept, marked deleted, for the audit trail, and answers 404 from now"
        " on (a second delete too). A video still `queued` or `in_progress` cannot be deleted yet."
    ),
    responses={
        200: answer(DeletedVideo, "The video's files are deleted."),
        400: refusal("The video is still queued or in progress.", "video_not_finished"),
        404: refusal("No video with this id belongs to the caller (or it was deleted).", "video_not_found"),
        **OWNER_ERRORS,
    },
)
@reads(path={"video_id": VIDEO_ID})
def delete_route(video_id: str) -> Response:
    return json_response(200, delete_video(current(), caller(app.current_event), video_id))


@app.get(
    "/v1/videos/<video_id>/content",
    operation_id="getVideoContent",
    tags=["videos"],
    summary="Download the MP4 or one of its previews",
    description=(
        "A redirect to a presigned S3 URL of the MP4 (`variant=video`, the default) or of a preview"
        " drawn from its frames when it was archived: `thumbnail` (the frame at 10% of the duration, at"
        " most 640 px wide) or `spritesheet` (up to 10 frames at the starts of equal slices of the"
        " duration, each 160 px wide, left to right and top to bottom in rows of 5; the object's"
        " `x-amz-meta-layout` says `columns`, `rows`, `frame`, `frames` and each frame's `times`), both"
        " `image/webp`. Follow it without the API key: the link carries its own authority (GET of this"
        " one object, for a limited time)."
    ),
    responses={
        302: {
            "description": "The MP4 or the preview is at the URL in `Location`.",
            "headers": {
                "Location": {
                    "required": True,
                    "description": "A presigned S3 URL of the object (`video/mp4` or `image/webp`).",
                    "schema": {"type": "string", "format": "uri"},
                }
            },
            "content": {},  # no body
        },
        400: refusal("`variant` is not `video`, `thumbnail` or `spritesheet`.", "invalid_value"),
        404: refusal(
            "No such video of the caller's (`video_not_found`), it is not `completed` (`video_not_ready`),"
            " or the previews could not be made from it (`preview_not_available`; the MP4 is still served).",
            "video_not_found",
            "video_not_ready",
            "preview_not_available",
        ),
        **OWNER_ERRORS,
    },
)
@reads(
    path={"video_id": VIDEO_ID},
    query={
        "variant": (
            Literal["video", "thumbnail", "spritesheet"],
            Field("video", description="Which asset: the MP4 (`video`, also when empty) or a WebP preview."),
        )
    },
)
def content_route(video_id: str) -> Response:
    variant = parse_variant(app.current_event.get_query_string_value("variant"))
    url = video_content_url(current(), caller(app.current_event), video_id, variant)
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


@app.get(
    "/v1/usage",
    operation_id="getUsage",
    tags=["usage"],
    summary="The caller's tenant's spend and count in a month",
    description=(
        "What the month's accepted videos cost at list price (the catalogue's price per second times"
        " their seconds) and how many there are, against the tenant's monthly budget. A video refused"
        " by the provider, or failed before it took it, is given back; one the provider took counts,"
        " whatever became of it."
    ),
    responses={
        200: answer(UsageObject, "The month's usage."),
        400: refusal("month is not a UTC month written YYYY-MM (`param` is `month`).", "invalid_request"),
        **OWNER_ERRORS,
    },
)
@reads(
    query={
        "month": (
            str,
            Field(
                None,
                pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                description="The UTC month, `YYYY-MM`; the current one when absent.",
            ),
        )
    }
)
def usage_route() -> Response:
    event = app.current_event
    month = parse_month(event.get_query_string_value("month"), now_ms=now_millis())
    return json_response(200, usage_of(current(), caller(event), month, tenant_limits(event)))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
