"""AceDataCloud's video services (shared/providers/acedata-video.md): one adapter for all of them.

Every service answers the same two routes, `POST /<svc>/videos` (create) and `POST /<svc>/tasks`
(lookup), with the same error shape, but takes its own create fields and reports its own result
body. So there is one request builder per service and one result normaliser for all of them.

A catalogue entry names the service (`route`), the service's model (`provider_model`) and how each
of our sizes is spelled there (`SizeSpec`): `aspect_ratio` holds the service's shape value (its
`aspect_ratio` or `ratio`, or wan's `size` such as `1280*720`) and `resolution` its resolution
value in the service's letter case (kling has none: its `mode`, std 720p or pro 1080p, takes it).

AceData signs nothing: a push only says which task to look up, and `query` reads the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sora_relay.adapters.providers.http import (
    ClientSource,
    client_getter,
    json_object,
    raise_for_status,
    send,
)
from sora_relay.domain.catalogue import ModelEntry, SizeSpec
from sora_relay.domain.errors import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
)
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState, Push

MAX_BATCH = 50  # ids per retrieve_batch call

# Services whose text-to-video model has a separate image-to-video twin: with a first-frame image
# the twin is sent (wan's guide: text2video takes only wan2.6-t2v, image2video only the i2v models).
IMAGE_TWINS = {
    "wan2.6-t2v": "wan2.6-i2v",
    "minimax-t2v": "minimax-i2v",
    "doubao-seedance-1-0-lite-t2v-250428": "doubao-seedance-1-0-lite-i2v-250428",
    "happyhorse-1.0-t2v": "happyhorse-1.0-i2v",
    "happyhorse-1.1-t2v": "happyhorse-1.1-i2v",
}

# Error codes that mean our key, our subscription or our quota, whatever the HTTP status says
# (acedata-sora.md's platform table: no_token and token_mismatched come as 400).
_KEY_CODES = frozenset(
    {"no_token", "invalid_token", "token_expired", "token_mismatched", "disabled", "used_up"}
)

# The words the SDK's task_status() reads in a `state` or `status` field (AceDataCloud/SDK
# python/src/acedatacloud/_runtime/tasks.py): services spell the end differently.
_DONE = frozenset({"succeed", "succeeded", "success", "completed", "complete", "finished"})
_FAILED = frozenset({"failed", "failure", "error", "cancelled", "canceled", "rejected"})
_CANCELLED = frozenset({"cancelled", "canceled"})


# --- The create bodies, one model per service, mapped explicitly from our request. ---
class _Body(BaseModel):
    # Each service's body is built on its first use (`defer_build`): a submit builds the one
    # its model's service takes, a callback's lookup none.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    callback_url: str
    # Always with callback_url: without both the create call holds until the video exists.
    async_: bool = Field(default=True, serialization_alias="async")

    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class _ImageRef(BaseModel):
    url: str


class _ContentItem(BaseModel):
    """An item of seedance's and minimax's `content[]`: the prompt, or a first-frame image."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: _ImageRef | None = None
    role: Literal["first_frame"] | None = None


class VeoBody(_Body):
    action: Literal["text2video", "image2video"]
    model: str
    prompt: str
    image_urls: list[str] | None = None  # one image: the first frame
    aspect_ratio: str | None = None
    resolution: str | None = None  # absent = 720p


class KlingBody(_Body):
    action: Literal["text2video", "image2video"]
    model: str
    prompt: str
    start_image_url: str | None = None
    duration: int
    aspect_ratio: str | None = None
    mode: str | None = None  # std (720p) | pro (1080p) | 4k
    generate_audio: bool | None = None


class LumaBody(_Body):
    action: Literal["generate"] = "generate"
    prompt: str
    start_image_url: str | None = None
    aspect_ratio: str | None = None


class HailuoBody(_Body):
    action: Literal["generate"] = "generate"
    model: str
    prompt: str
    first_image_url: str | None = None


class MinimaxBody(_Body):
    model: str
    content: list[_ContentItem]  # no top-level prompt
    duration: int
    resolution: str  # required: 768P | 2K
    ratio: str | None = None


class SeedanceBody(_Body):
    model: str
    content: list[_ContentItem]
    duration: int
    ratio: str | None = None
    resolution: str | None = None
    generate_audio: bool | None = None


class WanBody(_Body):
    action: Literal["text2video", "image2video"]
    model: str
    prompt: str
    image_url: str | None = None
    duration: int
    size: str | None = None  # `1280*720`: text2video only
    resolution: str | None = None  # `720P`: image2video, whose video keeps the image's aspect
    audio: bool


class HappyHorseBody(_Body):
    action: Literal["generate", "image_to_video"]
    model: str
    prompt: str
    image_url: str | None = None
    duration: int
    ratio: str | None = None
    resolution: str | None = None


def _model(request: GenerationRequest) -> str:
    model = request.model.provider_model
    if not model:
        raise ConfigurationError(f"Catalogue entry {request.model.id} names no AceData model")
    return IMAGE_TWINS.get(model, model) if request.image_url else model


def _content(request: GenerationRequest) -> list[_ContentItem]:
    items = [_ContentItem(type="text", text=request.prompt)]
    if request.image_url:
        items.append(
            _ContentItem(type="image_url", image_url=_ImageRef(url=request.image_url), role="first_frame")
        )
    return items


def _veo(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    image = request.image_url
    return VeoBody(
        action="image2video" if image else "text2video",
        model=_model(request),
        prompt=request.prompt,
        image_urls=[image] if image else None,
        aspect_ratio=shape.aspect_ratio,
        resolution=shape.resolution,
        callback_url=callback_url,
    )


def _kling(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    return KlingBody(
        action="image2video" if request.image_url else "text2video",
        model=_model(request),
        prompt=request.prompt,
        start_image_url=request.image_url,
        duration=request.seconds,
        aspect_ratio=shape.aspect_ratio,
        mode=shape.resolution,
        generate_audio=True if request.model.audio else None,
        callback_url=callback_url,
    )


def _luma(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    # Luma has no model enum and no duration field.
    return LumaBody(
        prompt=request.prompt,
        start_image_url=request.image_url,
        aspect_ratio=shape.aspect_ratio,
        callback_url=callback_url,
    )


def _hailuo(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    return HailuoBody(
        model=_model(request),
        prompt=request.prompt,
        first_image_url=request.image_url,
        callback_url=callback_url,
    )


def _minimax(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    if not shape.resolution:
        raise ConfigurationError(f"{request.model.id}: minimax needs a resolution for {request.size}")
    return MinimaxBody(
        model=_model(request),
        content=_content(request),
        duration=request.seconds,
        resolution=shape.resolution,
        ratio=shape.aspect_ratio,
        callback_url=callback_url,
    )


def _seedance(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    return SeedanceBody(
        model=_model(request),
        content=_content(request),
        duration=request.seconds,
        ratio=shape.aspect_ratio,
        resolution=shape.resolution,
        generate_audio=True if request.model.audio else None,
        callback_url=callback_url,
    )


def _wan(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    image = request.image_url
    return WanBody(
        action="image2video" if image else "text2video",
        model=_model(request),
        prompt=request.prompt,
        image_url=image,
        duration=request.seconds,
        size=None if image else shape.aspect_ratio,
        resolution=shape.resolution if image else None,
        audio=request.model.audio,
        callback_url=callback_url,
    )


def _happyhorse(request: GenerationRequest, shape: SizeSpec, callback_url: str) -> _Body:
    return HappyHorseBody(
        action="image_to_video" if request.image_url else "generate",
        model=_model(request),
        prompt=request.prompt,
        image_url=request.image_url,
        duration=request.seconds,
        ratio=shape.aspect_ratio,
        resolution=shape.resolution,
        callback_url=callback_url,
    )


BUILDERS: dict[str, Callable[[GenerationRequest, SizeSpec, str], _Body]] = {
    "veo": _veo,
    "kling": _kling,
    "luma": _luma,
    "hailuo": _hailuo,
    "minimax": _minimax,
    "seedance": _seedance,
    "wan": _wan,
    "happyhorse": _happyhorse,
}


def create_body(request: GenerationRequest, *, callback_url: str) -> dict[str, Any]:
    """The JSON body of `POST /<svc>/videos` for a request to the entry's service."""
    entry = request.model
    build = BUILDERS.get(entry.route)
    if build is None:
        raise ConfigurationError(f"{entry.id}: AceData service {entry.route!r} is not supported")
    shape = entry.sizes.get(request.size)
    if shape is None:
        raise InvalidRequest(
            f"size {request.size!r} is not offered by {entry.id} (sizes: {', '.join(entry.sizes)})",
            param="size",
        )
    return build(request, shape, callback_url).payload()


# --- Reading results: the SDK's task_status() and artifact_urls(), narrowed to the video. ---
def _items(response: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The body and its `data` (an object at some services, a list at others)."""
    data = response.get("data")
    nested = data if isinstance(data, list) else [data]
    return [response, *(item for item in nested if isinstance(item, Mapping))]


def _video_url(response: Mapping[str, Any]) -> str | None:
    # Top-level (kling, luma, wan), data[].video_url (veo, hailuo), data[].content.video_url
    # (seedance). Never any `*_url`: luma's thumbnail_url and hailuo's first_image_url are not it.
    for item in _items(response):
        content = item.get("content")
        for holder in (item, content if isinstance(content, Mapping) else {}):
            url = holder.get("video_url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                return url
    return None


def _words(response: Mapping[str, Any]) -> set[str]:
    return {
        value.strip().lower()
        for item in _items(response)
        for key in ("state", "status")
        if isinstance(value := item.get(key), str)
    }


def _progress(response: Mapping[str, Any]) -> int | None:
    for item in _items(response):
        value = item.get("progress")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        return max(0, min(100, int(value * 100) if 0 < value <= 1 else int(value)))
    return None


def _failed(task_id: str, response: Mapping[str, Any], words: set[str]) -> ProviderResult:
    error = response.get("error")
    code = message = None
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
    elif isinstance(error, str):
        message = error
    for key in ("failure_reason", "fail_reason", "message"):
        if not message and isinstance(response.get(key), str):
            message = response[key]
    if not code:
        code = "cancelled" if words & _CANCELLED else "generation_failed"
    return ProviderResult(
        task_id,
        ProviderState.FAILED,
        error_code=str(code),
        error_message=str(message or "The video provider reported a failure"),
    )


def read_result(task_id: str, response: Any, *, finished: bool = False) -> ProviderResult:
    """One task's state from its result body (a callback body, or a record's `response`).

    A status word outranks the `success` flag (the SDK's order): a failure word fails the task,
    a success word without a video fails it too, any other word keeps it running. Without a word,
    `success: false` with a structured error (or after the end) fails it, a video URL ends it
    well, and anything else, no body at all included, counts as still running.
    """
    if not isinstance(response, Mapping):
        return ProviderResult(task_id, ProviderState.RUNNING)
    words = _words(response)
    url = _video_url(response)
    finished = finished or response.get("finished_at") is not None
    no_video = ProviderResult(
        task_id,
        ProviderState.FAILED,
        error_code="no_video",
        error_message="The provider finished without a video",
    )
    if words & _FAILED:
        return _failed(task_id, response, words)
    if words & _DONE:
        return ProviderResult(task_id, ProviderState.SUCCEEDED, video_url=url) if url else no_video
    if words:
        return ProviderResult(task_id, ProviderState.RUNNING, progress=_progress(response))
    success = response.get("success")
    error = response.get("error")
    if success is False and ((isinstance(error, Mapping) and error.get("code")) or finished):
        return _failed(task_id, response, words)
    if url and success is not False:
        return ProviderResult(task_id, ProviderState.SUCCEEDED, video_url=url)
    if finished and success is True:
        return no_video
    return ProviderResult(task_id, ProviderState.RUNNING, progress=_progress(response))


class _TaskRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    response: Any = None
    finished_at: float | str | None = None


@dataclass(frozen=True)
class _Error:
    code: str
    message: str


def _error_of(response: httpx.Response) -> _Error:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return _Error(str(error.get("code") or "unknown"), str(error.get("message") or ""))
    return _Error("unknown", response.text[:200])


def _raise_for(response: httpx.Response) -> None:
    """The error table of acedata-video.md (and the platform table of acedata-sora.md)."""
    error = _error_of(response)
    if error.code == "forbidden":  # moderation: the content was refused, not our key
        raise ProviderRejected(error.message or "The provider refused the content", code="content_refused")
    if error.code in _KEY_CODES:
        raise ProviderAuthFailed(
            f"The video provider refused our credentials or quota ({error.code}); "
            "this is not your request's fault"
        )
    if response.status_code == 404:  # a route that is gone (as /sora/* went): ours to fix
        raise ProviderProtocolError(f"The video provider has no such route (404 {error.code})")
    raise_for_status(response, code=error.code, message=error.message)


class AceDataVideo:
    name = "acedata"

    def __init__(
        self,
        client: ClientSource,
        *,
        base_url: str,
        api_key: Callable[[], str],
        timeout: float,
    ) -> None:
        self._client = client_getter(client)  # a push needs no client: built on the first call
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key  # read per call: the secret cache picks up rotation
        self._timeout = timeout

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        body = create_body(request, callback_url=callback_url)
        answer = self._post(f"/{request.model.route}/videos", body)
        task_id = answer.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderProtocolError("The provider's answer carried no task id")
        return task_id

    def read_push(self, headers: Mapping[str, str], body: bytes) -> Push:
        # Unsigned: only the task id is read; the caller checks the per-task token in the URL
        # and then trusts nothing but what `query` answers.
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise InvalidRequest("The callback body is not JSON", code="invalid_callback") from error
        if not isinstance(payload, dict):
            raise InvalidRequest("The callback body is not a JSON object", code="invalid_callback")
        task_id = payload.get("task_id")
        if not isinstance(task_id, str) or not task_id.strip():
            raise InvalidRequest(
                "The callback body names no task_id", param="task_id", code="invalid_callback"
            )
        return Push(task_id)

    def query(self, model: ModelEntry, provider_task_ids: list[str]) -> list[ProviderResult]:
        wanted = set(provider_task_ids)
        results: list[ProviderResult] = []
        for start in range(0, len(provider_task_ids), MAX_BATCH):
            ids = provider_task_ids[start : start + MAX_BATCH]
            answer = self._post(f"/{model.route}/tasks", {"action": "retrieve_batch", "ids": ids})
            items = answer.get("items", [])
            try:
                records = [_TaskRecord.model_validate(item) for item in items]
            except (ValidationError, TypeError) as error:
                raise ProviderProtocolError("The provider's task records are malformed") from error
            results.extend(
                read_result(record.id, record.response, finished=record.finished_at is not None)
                for record in records
                if record.id in wanted  # only ever our own tasks
            )
        return results

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self._api_key()}", "accept": "application/json"}
        response = send(
            self._client(),
            "POST",
            f"{self._base_url}{path}",
            timeout=self._timeout,
            json=payload,
            headers=headers,
        )
        if not response.is_success:
            _raise_for(response)
        return json_object(response)
