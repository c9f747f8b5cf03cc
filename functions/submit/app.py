"""POST /v1/videos (JSON or multipart/form-data) and /v1/videos/{id}/remix: accept a generation
request and start it at the provider. POST /v1/videos/edits, /extensions, /characters and
GET /v1/videos/characters/{id}: OpenAI's routes no catalogue model can serve, answered so."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.domain.create_request import CreateVideoRequest
from sora_relay.domain.models import VideoObject
from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import (
    OWNER_ERRORS,
    STRIP_PREFIXES,
    answer,
    caller,
    install_error_handlers,
    json_response,
    public_base_url,
    reads,
    refusal,
    tenant_limits,
)
from sora_relay.runtime.container import current
from sora_relay.runtime.multipart import FORM_EXTENSION, read_create, read_fields
from sora_relay.usecases.idempotency import _KEY, HEADER, submit_once
from sora_relay.usecases.remix import RemixVideoRequest, parse_remix_fields, remix
from sora_relay.usecases.unsupported import refuse_character, refuse_operation

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)

IDEMPOTENCY_KEY = (
    str,
    Field(
        None,
        min_length=1,
        max_length=255,
        pattern=_KEY.pattern,
        description=(
            "Makes retries safe: scoped to the API key and kept 24 h. The same key and body"
            " answer the first answer again and make no second task; the same key with another"
            " body is a 422; the same key while the first request still runs is a 409."
        ),
    ),
)
VIDEO_ID = (str, Field(description="The video's id (`video_` and 32 hex digits); any other value is a 404."))
# What a tenant's limits answer, on every route that makes a video (usecases/budget.py).
MODEL_NOT_ALLOWED = refusal(
    "The model is not one the caller's tenant may use (`model_not_allowed`, `param` is `model`).",
    "model_not_allowed",
)
INSUFFICIENT_QUOTA = refusal(
    "The video's cost (the model's price for its seconds) would take the tenant past its monthly"
    " budget: OpenAI's answer to a spent quota, with `type` and `code` `insufficient_quota`. Nothing"
    " was stored and the provider was not called; `x-should-retry: false` (the budget renews on"
    " the 1st, UTC).",
    "insufficient_quota",
    headers={
        "x-should-retry": {
            "required": False,
            "description": "`false` on `insufficient_quota`: the OpenAI SDK does not retry it.",
            "schema": {"type": "string", "enum": ["false"]},
        }
    },
)


@app.post(
    "/v1/videos",
    operation_id="createVideo",
    # The body may also be a form (what OpenAI's SDK sends); scripts/openapi.py documents it.
    openapi_extensions={FORM_EXTENSION: "create"},
    tags=["videos"],
    summary="Create a video",
    description=(
        "Stores the task and submits it to the provider; answers 202 with the video object at once"
        " (`in_progress` once the provider has the task). When the provider is rate limiting, failing"
        " or slow the answer is still 202 with the task `queued`: a dispatch queue retries it with"
        " backoff, and the task ends `completed` or `failed` like any other (a deployment without a"
        " dispatch queue retries in line, then answers the task `failed` with"
        " `provider_unavailable`).\n\n"
        "The body is JSON, or multipart/form-data with the same fields (what OpenAI's SDK sends),"
        " where `input_reference` may be the image file itself: PNG, JPEG or WebP by its bytes, at"
        " most 4 MiB, stored in the service's bucket and handed to the provider as a short-lived"
        " link. In either, `input_reference` may also be a base64 data URL or OpenAI's"
        ' `{"image_url"}` (`input_reference[image_url]` in a form); `{"file_id"}` is a 400.\n\n'
        "An unknown field, a bad value or a body that is not a JSON object or a valid form is a 400"
        " naming the field in `param`. A JSON body over 64 KiB, or a form over 4 MiB + 64 KiB, is a"
        " 413.\n\n"
        "Once the task is stored the answer is 202 with the video as a later GET shows it, never a"
        " 409, 429 or 5xx (OpenAI's SDK retries those, POST included, into a second task): `queued`"
        " when it will still run, or `failed` with the reason in `error`: the provider refused our"
        " key or quota (`provider_auth_error`), broke its contract (`provider_protocol_error`), failed"
        " or fell silent while taking the create (`provider_outcome_unknown`: it may have started"
        " the job, so the create is not sent again; submit again to retry), stayed unavailable"
        " without a dispatch queue (`provider_unavailable`), or the task could not be handed on to"
        " dispatch (`dispatch_failed`)."
    ),
    responses={
        202: answer(
            VideoObject,
            "Accepted; the video object (`queued` or `in_progress`; `failed` with its reason when the"
            " task was stored and then failed at once; or what an earlier request with the same"
            " Idempotency-Key answered).",
        ),
        400: refusal(
            "The request is invalid: not a JSON object (`invalid_json`), a missing field"
            " (`missing_parameter`), an unknown field (`unknown_parameter`), a bad value or one the model"
            " does not offer (`invalid_value`), an unknown model (`model_not_found`), a retired one"
            " (`model_retired`) or one this deployment has no key for (`model_unavailable`), a"
            " callback_url, image_urls or input_reference that is not https or points at a private,"
            " loopback or link-local address (`unsafe_url`), a malformed Idempotency-Key"
            " (`invalid_request`), a form that is not valid multipart/form-data (`invalid_multipart`),"
            " an input_reference file that is not a PNG, JPEG or WebP (`invalid_image`) or over 4 MiB"
            " (`file_too_large`), or the provider refused the request itself (`provider_rejected`) or"
            " its content (`content_refused`).",
            *("invalid_json", "missing_parameter", "unknown_parameter", "invalid_value", "model_not_found"),
            *("model_retired", "model_unavailable", "unsafe_url", "invalid_request", "provider_rejected"),
            *("content_refused", "invalid_multipart", "invalid_image", "file_too_large"),
        ),
        403: MODEL_NOT_ALLOWED,
        409: refusal(
            "A request with this Idempotency-Key is still being processed.", "idempotency_key_in_use"
        ),
        413: refusal("The body is larger than 64 KiB (a form: 4 MiB + 64 KiB).", "request_too_large"),
        422: refusal("This Idempotency-Key was used with a different request.", "idempotency_key_reused"),
        429: INSUFFICIENT_QUOTA,
        **OWNER_ERRORS,
    },
)
@reads(body=CreateVideoRequest, headers={HEADER: IDEMPOTENCY_KEY})
def create_video() -> Response:
    event = app.current_event
    request, upload = read_create(event)
    video = submit_once(
        current(),
        request,
        owner=caller(event),
        public_base_url=public_base_url(event),
        key=event.headers.get(HEADER),
        context=app.lambda_context,
        upload=upload,
        limits=tenant_limits(event),
    )
    return json_response(202, video)


@app.post(
    "/v1/videos/<video_id>/remix",
    operation_id="remixVideo",
    openapi_extensions={FORM_EXTENSION: "fields"},
    tags=["videos"],
    summary="Remix a completed video with a new prompt",
    description=(
        "A new video from the source's model, seconds and size with the new prompt;"
        " `remixed_from_video_id` names the source. No catalogue model takes a video as input, so"
        " the new one is generated from the prompt alone. JSON (what OpenAI's SDK sends) or"
        " multipart/form-data; the same Idempotency-Key semantics as POST /v1/videos."
    ),
    responses={
        202: answer(
            VideoObject,
            "Accepted; the new video object (`failed` with its reason when it was stored and then"
            " failed at once, as on POST /v1/videos).",
        ),
        400: refusal(
            "The body is invalid (`invalid_json`, `missing_parameter`, `unknown_parameter`,"
            " `invalid_value`, `unsafe_url`, `invalid_multipart`), the source is not completed"
            " (`video_not_completed`), its model is no longer available (`model_unavailable`), or"
            " the provider refused the request (`provider_rejected`, `content_refused`).",
            *("invalid_json", "missing_parameter", "unknown_parameter", "invalid_value", "unsafe_url"),
            *("invalid_multipart", "video_not_completed", "model_unavailable", "provider_rejected"),
            *("content_refused", "invalid_request"),
        ),
        404: refusal("No video with this id belongs to the caller.", "video_not_found"),
        403: MODEL_NOT_ALLOWED,
        409: refusal(
            "A request with this Idempotency-Key is still being processed.", "idempotency_key_in_use"
        ),
        413: refusal("The body is larger than 64 KiB.", "request_too_large"),
        422: refusal("This Idempotency-Key was used with a different request.", "idempotency_key_reused"),
        429: INSUFFICIENT_QUOTA,
        **OWNER_ERRORS,
    },
)
@reads(path={"video_id": VIDEO_ID}, body=RemixVideoRequest, headers={HEADER: IDEMPOTENCY_KEY})
def remix_video(video_id: str) -> Response:
    event = app.current_event
    deps = current()
    fields = parse_remix_fields(read_fields(event), allow_loopback=deps.settings.allow_loopback_urls)
    video = remix(
        deps,
        fields,
        owner=caller(event),
        video_id=video_id,
        public_base_url=public_base_url(event),
        key=event.headers.get(HEADER),
        context=app.lambda_context,
        limits=tenant_limits(event),
    )
    return json_response(202, video)


UNSUPPORTED = refusal(
    "No catalogue model takes a video as input, so none can serve this (the message names the"
    " models there are).",
    "unsupported_operation",
)


@app.post(
    "/v1/videos/edits",
    operation_id="editVideo",
    tags=["videos"],
    summary="Edit a video (no catalogue model can: always 400)",
    responses={400: UNSUPPORTED, **OWNER_ERRORS},
)
def edit_video() -> Response:
    caller(app.current_event)
    refuse_operation(current(), "edit")


@app.post(
    "/v1/videos/extensions",
    operation_id="extendVideo",
    tags=["videos"],
    summary="Extend a video (no catalogue model can: always 400)",
    responses={400: UNSUPPORTED, **OWNER_ERRORS},
)
def extend_video() -> Response:
    caller(app.current_event)
    refuse_operation(current(), "extend")


@app.post(
    "/v1/videos/characters",
    operation_id="createVideoCharacter",
    tags=["videos"],
    summary="Make a character from a video (no catalogue model can: always 400)",
    responses={400: UNSUPPORTED, **OWNER_ERRORS},
)
def create_character() -> Response:
    caller(app.current_event)
    refuse_operation(current(), "create_character")


@app.get(
    "/v1/videos/characters/<character_id>",
    operation_id="getVideoCharacter",
    tags=["videos"],
    summary="Read a character (none exist: always 404)",
    responses={
        404: refusal("No model here makes characters, so no character exists.", "character_not_found"),
        **OWNER_ERRORS,
    },
)
@reads(path={"character_id": (str, Field(description="A character id."))})
def get_character(character_id: str) -> Response:
    caller(app.current_event)
    refuse_character(current(), character_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
