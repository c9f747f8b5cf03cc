"""The public API's shapes: the create request and the video object (OpenAI Videos field names)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sora_relay.domain.errors import InvalidRequest
from sora_relay.domain.outbound_url import parse_outbound_url
from sora_relay.domain.task import Status, Task
from sora_relay.domain.video import DownloadLink

# What each model offers (seconds, sizes, images) is in the catalogue (domain/catalogue.py); the
# submit use case checks a request against the model that serves it. Here: the request's shape.
DEFAULT_SIZE = "1280x720"  # the seed tool's default, where the model offers it
MAX_PROMPT_CHARS = 4000
MAX_IMAGES = 4


class CreateVideoRequest(BaseModel):
    """`POST /v1/videos`: the seed tool's fields, plus OpenAI's `seconds` and `input_reference`.

    `model`, `seconds`/`duration` and `size` default to what the model offers (the deployment's
    DefaultModel when `model` is absent).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, min_length=1, max_length=64)
    duration: int | None = Field(default=None, ge=1, le=60)
    seconds: str | None = Field(default=None, pattern=r"^[1-9][0-9]?$")
    size: str | None = Field(default=None, pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
    callback_url: str | None = None
    image_urls: list[str] | None = Field(default=None, max_length=MAX_IMAGES)
    input_reference: str | None = None
    # What callback_url hears: our event (default), or AceDataCloud's Sora callback body, which the
    # seed MCP server's `_async` tools promised (domain/acedata_sora.py); signed the same way.
    webhook_format: Literal["event", "acedata_sora"] = "event"

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_as_text(cls, value: Any) -> Any:
        # OpenAI documents a string; an integer is an obvious enough intent to accept.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> CreateVideoRequest:
        if self.duration is not None and self.seconds is not None and int(self.seconds) != self.duration:
            raise _FieldProblem("seconds", "seconds and duration disagree; send one of them")
        return self

    @property
    def video_seconds(self) -> int | None:
        """The length asked for (None: the model's default)."""
        if self.duration is not None:
            return self.duration
        return int(self.seconds) if self.seconds is not None else None

    @property
    def seconds_field(self) -> str:
        return "duration" if self.duration is not None else "seconds"

    @property
    def image_url(self) -> str | None:
        """The one reference image the provider uses (the first of `image_urls`)."""
        return self.image_urls[0] if self.image_urls else self.input_reference

    @property
    def image_field(self) -> str:
        return "image_urls" if self.image_urls else "input_reference"


class _FieldProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_create_request(body: str | bytes | None, *, allow_loopback: bool) -> CreateVideoRequest:
    """Decode and validate a create body; every problem is an InvalidRequest naming its field."""
    if body is None or (isinstance(body, (str, bytes)) and not body.strip()):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest("The request body is not valid JSON", code="invalid_json") from error
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    try:
        request = CreateVideoRequest.model_validate(data)
    except ValidationError as error:
        raise _as_invalid_request(error) from None
    if request.callback_url is not None:
        parse_outbound_url(request.callback_url, field="callback_url", allow_loopback=allow_loopback)
    for url in request.image_urls or []:
        parse_outbound_url(url, field="image_urls", allow_loopback=allow_loopback)
    if request.input_reference is not None:
        parse_outbound_url(request.input_reference, field="input_reference", allow_loopback=allow_loopback)
    return request


def _as_invalid_request(error: ValidationError) -> InvalidRequest:
    first = error.errors(include_url=False)[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, _FieldProblem):
        return InvalidRequest(cause.message, param=cause.field, code="invalid_value")
    field = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if kind == "missing":
        return InvalidRequest(f"{field} is required", param=field, code="missing_parameter")
    if kind == "extra_forbidden":
        return InvalidRequest(f"{field} is not a known parameter", param=field, code="unknown_parameter")
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidRequest(f"{field}: {message}", param=field, code="invalid_value")


class VideoError(BaseModel):
    code: str
    message: str


class VideoObject(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str  # the model asked for (OpenAI's field)
    served_model: str  # the catalogue model that made it (another one when the asked one is aliased)
    status: Status
    progress: int
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str
    seconds: str
    size: str
    error: VideoError | None
    callback_url: str | None
    cost_usd: float | None = None  # the catalogue's list price for this many seconds
    download_url: str | None = None
    download_expires_at: int | None = None

    @classmethod
    def from_task(cls, task: Task, link: DownloadLink | None = None) -> VideoObject:
        error = (
            VideoError(code=task.error_code, message=task.error_message or task.error_code)
            if task.error_code
            else None
        )
        return cls(
            id=task.task_id,
            model=task.requested_model or task.model,
            served_model=task.model,
            status=task.status,
            # 100 only when the video is in our bucket; before, what the provider last reported.
            progress=100 if task.status is Status.COMPLETED else min(task.progress or 0, 99),
            created_at=task.created_ms // 1000,
            completed_at=task.completed_ms // 1000 if task.completed_ms else None,
            expires_at=task.expires_at,
            prompt=task.prompt,
            seconds=str(task.seconds),
            size=task.size,
            error=error,
            callback_url=task.callback_url,
            cost_usd=task.cost_microusd / 1_000_000 if task.cost_microusd is not None else None,
            download_url=link.url if link else None,
            download_expires_at=link.expires_at if link else None,
        )


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ModelObject(BaseModel):
    """`GET /v1/models/{id}`: OpenAI's model object (id, object, created, owned_by) plus what the
    catalogue says of the model. `created` is when the entry's facts (its price) were read."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str  # the provider family that runs it
    name: str
    status: str  # live | retired
    available: bool  # this deployment holds a key for its provider (or, retired, its alias's)
    seconds: list[int]
    default_seconds: int
    sizes: list[str]
    default_size: str
    image: bool
    audio: bool
    price_per_second_usd: float
    price_read: str
    replaced_by: list[str]
    served_by: str | None = None  # retired and aliased here: the live model that serves it


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
