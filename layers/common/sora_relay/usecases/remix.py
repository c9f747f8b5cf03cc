"""Use case: POST /v1/videos/{id}/remix, a new video from a finished one's model, size and
seconds, with a new prompt.

OpenAI's remix reworks the source video itself. No catalogue model takes a video as input (each
takes a prompt and at most a first-frame image, and a frame of the source is not the video), so
the new task is generated from the prompt alone: `remixed_from_video_id` records where it came
from, and the source's own reference image is not reused either (its link was short-lived). The
source's callback_url and webhook format carry over, so the same receiver hears of the remix.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.create_request import MAX_PROMPT_CHARS, CreateVideoRequest, as_invalid_request
from sora_relay.domain.errors import InvalidRequest
from sora_relay.domain.models import VideoObject
from sora_relay.domain.outbound_url import parse_outbound_url
from sora_relay.domain.task import Status, Task
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.idempotency import submit_once
from sora_relay.usecases.read import owned_task


class RemixVideoRequest(BaseModel):
    """`POST /v1/videos/{id}/remix`: OpenAI's `{prompt}`, plus our `callback_url`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)  # remix only

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description=f"The new prompt (1 to {MAX_PROMPT_CHARS} characters after trimming).",
        json_schema_extra={"pattern": r"\S"},
    )
    callback_url: str | None = Field(
        default=None,
        description="Where the remix's webhook goes (the source's callback_url when absent).",
        json_schema_extra={"format": "uri", "pattern": "^https://"},
    )


def parse_remix_fields(data: Any, *, allow_loopback: bool) -> RemixVideoRequest:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    try:
        request = RemixVideoRequest.model_validate(data)
    except ValidationError as error:
        raise as_invalid_request(error) from None
    if request.callback_url is not None:
        parse_outbound_url(request.callback_url, field="callback_url", allow_loopback=allow_loopback)
    return request


def remix_source(deps: Deps, owner: str, video_id: str) -> Task:
    """The caller's completed video to remix: 404 for anyone else's (or a deleted one), 400 if
    it is not completed."""
    source = owned_task(deps, owner, video_id)
    if source.status is not Status.COMPLETED:
        raise InvalidRequest(
            f"Video {video_id} is {source.status.value}: only a completed video can be remixed",
            param="video_id",
            code="video_not_completed",
        )
    return source


def remix_request(source: Task, remix: RemixVideoRequest) -> CreateVideoRequest:
    """The create request a remix amounts to: the source's model (as asked), seconds and size."""
    return CreateVideoRequest(
        prompt=remix.prompt,
        model=source.requested_model or source.model,
        seconds=str(source.seconds),
        size=source.size,
        callback_url=remix.callback_url or source.callback_url,
        webhook_format=source.webhook_format,  # type: ignore[arg-type]
    )


def remix(
    deps: Deps,
    remix: RemixVideoRequest,
    *,
    owner: str,
    video_id: str,
    public_base_url: str,
    key: str | None,
    context: LambdaContext | None = None,
    limits: TenantLimits | None = None,
) -> VideoObject:
    """`POST /v1/videos/{id}/remix`: the caller's completed source, then the create it amounts
    to, with POST /v1/videos' Idempotency-Key semantics."""
    source = remix_source(deps, owner, video_id)
    return submit_once(
        deps,
        remix_request(source, remix),
        owner=owner,
        public_base_url=public_base_url,
        key=key,
        context=context,
        remixed_from=source.task_id,
        limits=limits,
    )
