"""POST /v1/videos: accept a generation request and start it at the provider."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.domain.models import CreateVideoRequest, VideoObject, parse_create_request
from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import (
    OWNER_ERRORS,
    PROVIDER_ERRORS,
    STRIP_PREFIXES,
    answer,
    caller,
    install_error_handlers,
    json_response,
    public_base_url,
    reads,
    refusal,
    request_body,
    tenant_limits,
)
from sora_relay.runtime.container import current
from sora_relay.usecases.idempotency import _KEY, HEADER, submit_once

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)


@app.post(
    "/v1/videos",
    operation_id="createVideo",
    tags=["videos"],
    summary="Create a video",
    description=(
        "Stores the task and submits it to the provider; answers 202 with the video object at once"
        " (`in_progress` once the provider has the task). When the provider is rate limiting, failing"
        " or slow the answer is still 202 with the task `queued`: a dispatch queue retries it with"
        " backoff, and the task ends `completed` or `failed` like any other. Only a deployment without"
        " a dispatch queue answers 503 with `Retry-After` instead.\n\n"
        "An unknown field, a bad value or a body that is not a JSON object is a 400 naming the field in"
        " `param`. A body over 64 KiB is a 413."
    ),
    responses={
        202: answer(
            VideoObject,
            "Accepted; the video object (`queued` or `in_progress`, or what an earlier request with the"
            " same Idempotency-Key answered).",
        ),
        400: refusal(
            "The request is invalid: not a JSON object (`invalid_json`), a missing field"
            " (`missing_parameter`), an unknown field (`unknown_parameter`), a bad value or one the model"
            " does not offer (`invalid_value`), an unknown model (`model_not_found`), a retired one"
            " (`model_retired`) or one this deployment has no key for (`model_unavailable`), a"
            " callback_url, image_urls or input_reference that is not https or points at a private,"
            " loopback or link-local address (`unsafe_url`), a malformed Idempotency-Key"
            " (`invalid_request`), or the provider refused the request itself (`provider_rejected`) or"
            " its content (`content_refused`).",
            *("invalid_json", "missing_parameter", "unknown_parameter", "invalid_value", "model_not_found"),
            *("model_retired", "model_unavailable", "unsafe_url", "invalid_request", "provider_rejected"),
            "content_refused",
        ),
        403: refusal(
            "The model is not one the caller's tenant may use (`model_not_allowed`, `param` is `model`).",
            "model_not_allowed",
        ),
        409: refusal(
            "A request with this Idempotency-Key is still being processed.", "idempotency_key_in_use"
        ),
        413: refusal("The body is larger than 64 KiB.", "request_too_large"),
        422: refusal("This Idempotency-Key was used with a different request.", "idempotency_key_reused"),
        429: refusal(
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
        ),
        **OWNER_ERRORS,
        **PROVIDER_ERRORS,
    },
)
@reads(
    body=CreateVideoRequest,
    headers={
        HEADER: (
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
    },
)
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
        limits=tenant_limits(event),
    )
    return json_response(202, video)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
