"""POST /v1/callbacks/{provider}/{task_id}?token=...: a provider reports a result."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.domain.catalogue import PROVIDERS
from sora_relay.domain.models import CallbackReceipt
from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import (
    PROVIDER_ERRORS,
    SERVER_ERRORS,
    STRIP_PREFIXES,
    answer,
    install_error_handlers,
    json_response,
    reads,
    refusal,
    request_body,
)
from sora_relay.runtime.container import current
from sora_relay.usecases.record_push import record_callback

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)


@app.post(
    "/v1/callbacks/<provider>/<task_id>",
    operation_id="providerCallback",
    tags=["provider"],
    summary="A provider reports a result",
    description=(
        "The URL the relay gives the provider with each task. No API key: `token` is HMAC-SHA256 of"
        " the task id under a key in Secrets Manager, and it is checked before the table is read, so a"
        " caller without it learns nothing. Then the provider's adapter authenticates the push (fal's"
        " signature); a push without a signed result (AceData's) is only a cue, and the task is looked"
        " up over the provider's API. The provider task id must be the one stored. A result for a task"
        " already `completed` or `failed` changes nothing (`changed: false`)."
    ),
    responses={
        200: answer(CallbackReceipt, "The push was recorded (or the task had already finished)."),
        400: refusal(
            "The body is not one of the provider's pushes, or names no task (`invalid_callback`), or is"
            " not UTF-8 (`invalid_json`).",
            *("invalid_callback", "invalid_request", "invalid_json"),
        ),
        401: refusal(
            "The token is missing or wrong (`invalid_callback_token`), or the provider's signature is"
            " (`invalid_signature`).",
            "invalid_callback_token",
            "invalid_signature",
        ),
        404: refusal(
            "An unknown provider (`not_found`, `param` is `provider`), or no such task (`task_not_found`).",
            "not_found",
            "task_not_found",
        ),
        409: refusal(
            "The push names another provider task than the one stored (`callback_task_mismatch`), or"
            " another writer changed the task at the same moment (`invalid_transition`; the provider retries).",
            "callback_task_mismatch",
            "invalid_transition",
        ),
        413: refusal("The body is larger than 64 KiB.", "request_too_large"),
        **SERVER_ERRORS,
        **PROVIDER_ERRORS,
    },
)
@reads(
    body=(
        dict[str, Any],
        Field(description="The provider's push, in its own format (its adapter reads it)."),
    ),
    path={
        "provider": (
            str,
            Field(description="The provider that calls back.", json_schema_extra={"enum": list(PROVIDERS)}),
        ),
        "task_id": (str, Field(description="Our task (video) id.")),
    },
    query={
        "token": (str, Field(description="The per-task callback token from the URL the provider was given."))
    },
)
def provider_callback(provider: str, task_id: str) -> Response:
    event = app.current_event
    body = request_body(event).encode()
    token = event.get_query_string_value("token")
    task, changed = record_callback(current(), provider, task_id, token, body, dict(event.headers or {}))
    return json_response(200, CallbackReceipt(changed=changed, status=task.status))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
