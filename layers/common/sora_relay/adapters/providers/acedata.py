"""AceDataCloud Sora adapter (see shared/providers/acedata-sora.md): v2 mode, callback delivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from sora_relay.domain.errors import (
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState

MAX_BATCH = 50


# --- The provider's payloads, kept apart from ours and mapped explicitly. ---
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AceCreateBody(_Lenient):
    prompt: str
    model: str
    version: str = "2.0"
    duration: int
    size: str
    callback_url: str
    image_urls: list[str] | None = None


class AceVideo(_Lenient):
    id: str | None = None
    video_url: str | None = None
    state: str | None = None


class AceError(_Lenient):
    code: str = "unknown"
    message: str = ""


class AceResult(_Lenient):
    """A callback body, or the `response` of a task record."""

    success: bool | None = None
    task_id: str | None = None
    trace_id: str | None = None
    data: list[AceVideo] | None = None
    error: AceError | None = None


class AceTaskRecord(_Lenient):
    id: str
    response: AceResult | None = None


class AceCreated(_Lenient):
    task_id: str


def _result(provider_task_id: str, body: AceResult | None) -> ProviderResult:
    # The provider has no status field; derive it (unknown shapes count as still running).
    if body is None:
        return ProviderResult(provider_task_id, ProviderState.PENDING)
    if body.success is True:
        video = next((item for item in body.data or [] if item.video_url), None)
        if video is None:
            return ProviderResult(
                provider_task_id,
                ProviderState.FAILED,
                error_code="no_video",
                error_message="No video in the result",
            )
        return ProviderResult(provider_task_id, ProviderState.SUCCEEDED, video_url=video.video_url)
    if body.success is False:
        error = body.error or AceError()
        return ProviderResult(
            provider_task_id,
            ProviderState.FAILED,
            error_code=error.code,
            error_message=error.message or "The provider reported a failure",
        )
    return ProviderResult(provider_task_id, ProviderState.RUNNING)


def _error_of(response: httpx.Response) -> AceError:
    try:
        return AceError.model_validate(response.json().get("error") or {})
    except (ValueError, AttributeError, ValidationError):
        return AceError(code="unknown", message=response.text[:200])


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class AceDataSora:
    name = "acedata"

    def __init__(
        self,
        client: httpx.Client | Callable[[], httpx.Client],
        *,
        base_url: str,
        api_key: Callable[[], str],
        timeout: float,
    ) -> None:
        # A client, or where to get one when a request is made: a callback only parses a body, so
        # its function never builds the provider's client (and its TLS context) at all.
        self._client = client if callable(client) else lambda: client
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key  # read per call: the secret cache picks up rotation
        self._timeout = timeout

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        body = AceCreateBody(
            prompt=request.prompt,
            model=request.model,
            duration=request.seconds,
            size=request.size,
            callback_url=callback_url,
            image_urls=[request.image_url] if request.image_url else None,
        )
        answer = self._post("/sora/videos", body.model_dump(exclude_none=True))
        try:
            return AceCreated.model_validate(answer).task_id
        except ValidationError as error:
            raise ProviderProtocolError("The provider's answer carried no task id") from error

    def parse_callback(self, body: bytes) -> ProviderResult:
        try:
            result = AceResult.model_validate_json(body)
        except ValidationError as error:
            raise InvalidRequest(
                "The callback body is not an AceDataCloud result", code="invalid_callback"
            ) from error
        if not result.task_id:
            raise InvalidRequest(
                "The callback body names no task_id", param="task_id", code="invalid_callback"
            )
        return _result(result.task_id, result)

    def query(self, provider_task_ids: list[str]) -> list[ProviderResult]:
        results: list[ProviderResult] = []
        for start in range(0, len(provider_task_ids), MAX_BATCH):
            ids = provider_task_ids[start : start + MAX_BATCH]
            answer = self._post("/sora/tasks", {"action": "retrieve_batch", "ids": ids})
            try:
                records = [AceTaskRecord.model_validate(item) for item in answer.get("items", [])]
            except (ValidationError, AttributeError) as error:
                raise ProviderProtocolError("The provider's task records are malformed") from error
            results.extend(_result(record.id, record.response) for record in records)
        return results

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self._api_key()}", "accept": "application/json"}
        try:
            response = self._client().post(
                f"{self._base_url}{path}", json=payload, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as error:
            raise ProviderUnavailable(
                "The video provider did not answer in time", code="provider_timeout"
            ) from error
        except httpx.TransportError as error:
            raise ProviderUnavailable("The video provider could not be reached") from error
        status = response.status_code
        if status == 200:
            try:
                answer = response.json()
            except ValueError as error:
                raise ProviderProtocolError(
                    "The provider answered with something that is not JSON"
                ) from error
            if not isinstance(answer, dict):
                raise ProviderProtocolError("The provider answered with something that is not a JSON object")
            return answer
        error = _error_of(response)
        if status == 429 or status >= 500:
            raise ProviderUnavailable(
                f"The video provider is unavailable ({status} {error.code})",
                retry_after=_retry_after(response),
            )
        if status in (401, 403) or error.code in {
            "no_token",
            "token_mismatched",
            "invalid_token",
            "disabled",
        }:
            if error.code == "forbidden":  # moderation: the content was refused, not our key
                raise ProviderRejected(
                    error.message or "The provider refused the content", code="content_refused"
                )
            raise ProviderAuthFailed(
                f"The video provider refused our credentials or quota ({error.code}); "
                "this is not your request's fault"
            )
        if status == 400:
            raise ProviderRejected(error.message or "The provider rejected the request")
        raise ProviderProtocolError(f"The video provider answered HTTP {status} ({error.code})")
