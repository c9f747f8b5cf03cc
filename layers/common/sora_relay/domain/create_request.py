"""The create request (`POST /v1/videos`, the SQS intake, MCP's tools): its shape, its parsing, and
the 400 that names the field at fault. The answers are domain/models.py."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sora_relay.domain.errors import InvalidRequest
from sora_relay.domain.outbound_url import MAX_URL_LENGTH, parse_outbound_url
from sora_relay.domain.reference_image import ImageUpload, image_from_data_url, is_data_url

# What each model offers (seconds, sizes, images) is in the catalogue (domain/catalogue.py); the
# submit use case checks a request against the model that serves it. Here: the request's shape.
DEFAULT_SIZE = "1280x720"  # the seed tool's default, where the model offers it
MAX_PROMPT_CHARS = 4000
MAX_IMAGES = 4

# What the JSON schemas (docs/openapi.yaml) say of values parse_outbound_url() checks:
# `json_schema_extra` documents, it does not validate.
_OUTBOUND_URL = {"format": "uri", "pattern": "^https://", "maxLength": MAX_URL_LENGTH}


class ImageReference(BaseModel):
    """OpenAI's `input_reference` object: `{"image_url"}` (a URL or a base64 data URL) or
    `{"file_id"}` (OpenAI's Files API, which sora-relay does not have: a 400 that says so)."""

    # Built on first use (`defer_build`): only the create routes read a request.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    image_url: str | None = Field(
        default=None,
        max_length=8 * 1024 * 1024,
        description="An https URL, or a data URL `data:image/png;base64,...` (PNG, JPEG or WebP).",
    )
    file_id: str | None = Field(default=None, description="Not supported: upload the file instead.")


class CreateVideoRequest(BaseModel):
    """`POST /v1/videos`: the seed tool's fields, plus OpenAI's `seconds` and `input_reference`.

    `model`, `seconds`/`duration` and `size` default to what the model offers (the deployment's
    DefaultModel when `model` is absent). String values are trimmed of surrounding whitespace;
    `duration` and `seconds` are alternatives (send one). Every URL must be https to a public host.
    """

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"not": {"required": ["duration", "seconds"]}},
        defer_build=True,
    )

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description=f"What to generate (1 to {MAX_PROMPT_CHARS} characters after trimming).",
        json_schema_extra={"pattern": r"\S"},
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A model id or alias of GET /v1/models (the deployment's default when absent).",
    )
    duration: int | None = Field(
        default=None, ge=1, le=60, description="Seconds of video (the model's default when absent)."
    )
    seconds: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]?$",
        description="OpenAI's spelling of duration, a string; an integer is accepted too.",
    )
    size: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$",
        description="WIDTHxHEIGHT, one of the model's sizes (GET /v1/models).",
    )
    callback_url: str | None = Field(
        default=None,
        description="Where the signed webhook is POSTed when the video is completed or failed.",
        json_schema_extra=_OUTBOUND_URL,
    )
    image_urls: list[str] | None = Field(
        default=None,
        max_length=MAX_IMAGES,
        description="Reference images; only the first is used.",
        json_schema_extra={"items": _OUTBOUND_URL},
    )
    input_reference: str | ImageReference | None = Field(
        default=None,
        description=(
            "OpenAI's reference image (used when image_urls is absent): an https URL, a base64 data"
            ' URL, or `{"image_url": ...}`. As multipart/form-data it may also be the image file'
            " itself (PNG, JPEG or WebP, checked by its bytes, at most 4 MiB)."
        ),
    )
    webhook_format: Literal["event", "acedata_sora"] = Field(
        default="event",
        description=(
            "What callback_url hears: our event (default), or AceDataCloud's Sora callback body, "
            "which the seed MCP server's `_async` tools promised; signed the same way."
        ),
    )

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_as_text(cls, value: Any) -> Any:
        # OpenAI documents a string; an integer is an obvious enough intent to accept.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> CreateVideoRequest:
        if self.duration is not None and self.seconds is not None and int(self.seconds) != self.duration:
            raise _FieldProblem("seconds", "seconds and duration disagree; send one of them")
        reference = self.input_reference
        if isinstance(reference, ImageReference):
            if reference.file_id is not None:
                raise _FieldProblem(
                    "input_reference",
                    "input_reference.file_id is not supported (sora-relay has no Files API): upload"
                    " the image as the input_reference file, or send input_reference.image_url",
                )
            if not reference.image_url:
                raise _FieldProblem("input_reference", "input_reference needs image_url")
            self.input_reference = reference.image_url  # one spelling from here on: the URL
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
        """The one reference image link the provider uses (the first of `image_urls`); None for
        a data URL, which is an upload (`data_url_image`)."""
        if self.image_urls:
            return self.image_urls[0]
        reference = self.input_reference
        return reference if isinstance(reference, str) and not is_data_url(reference) else None

    @property
    def image_field(self) -> str:
        return "image_urls" if self.image_urls else "input_reference"

    def data_url_image(self) -> ImageUpload | None:
        """The image of an `input_reference` data URL, checked like an uploaded file."""
        reference = self.input_reference
        if self.image_urls or not isinstance(reference, str) or not is_data_url(reference):
            return None
        return image_from_data_url(reference)


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
        raise as_invalid_request(error) from None
    if request.callback_url is not None:
        parse_outbound_url(request.callback_url, field="callback_url", allow_loopback=allow_loopback)
    for url in request.image_urls or []:
        parse_outbound_url(url, field="image_urls", allow_loopback=allow_loopback)
    if isinstance(request.input_reference, str):
        if is_data_url(request.input_reference):
            image_from_data_url(request.input_reference)  # a bad image is a 400 before anything is stored
        else:
            parse_outbound_url(
                request.input_reference, field="input_reference", allow_loopback=allow_loopback
            )
    return request


def parse_create_fields(data: dict[str, Any], *, allow_loopback: bool) -> CreateVideoRequest:
    """A create request from already decoded fields (a multipart form), checked as the JSON is."""
    return parse_create_request(json.dumps(data), allow_loopback=allow_loopback)


def as_invalid_request(error: ValidationError) -> InvalidRequest:
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
