"""Replicate predictions (shared/providers/replicate.md): create, Standard Webhooks pushes, lookup.

- Create: `POST /v1/models/{owner}/{name}/predictions` with the model's own input names (the
  catalogue entry says them), our callback as `webhook` and the events filter below; never
  `Prefer: wait` (it holds the answer up to 60 s) and never resent here (a repeat bills twice).
- Push: the whole Prediction, signed per Standard Webhooks with the account's signing secret
  (`GET /v1/webhooks/default/secret`), checked by the `standardwebhooks` reference library.
- Lookup: `GET /v1/predictions/{id}`, the same Prediction a push carries.

Only `succeeded`, `failed` and `canceled` are terminal (the SDK's wait loops stop there); any
other status, known or not, is a task still running.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

from sora_relay.adapters.providers.http import (
    ClientSource,
    client_getter,
    json_object,
    raise_for_status,
    send,
)
from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.errors import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    SoraRelayError,
    Unauthorized,
)
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState, Push

# Only the terminal event. Replicate retries only that one ("We do not retry any webhooks for
# intermediate states", receive-webhook docs); `start` fires at creation, which the create answer
# already told us; `output` and `logs` come up to twice a second during a generation and each
# would cost an invocation and a signature check for a body that may not finish the task anyway.
# Progress is read by the reconciler's lookup (`query`) instead.
WEBHOOK_EVENTS = ("completed",)
SECRET_REFETCH_INTERVAL_S = 300.0  # a push that fails verification refetches at most this often
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_ROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# The SDK's tqdm progress line (replicate-python prediction.py, Prediction.Progress).
_PROGRESS = re.compile(r"^\s*(?P<percentage>\d+)%\s*\|.+?\|\s*(?P<current>\d+)/(?P<total>\d+)")
# Where a video URL may sit when a model answers with an object (the per-model table's shapes).
_VIDEO_KEYS = ("video", "url", "video_url", "output", "mp4")


# --- The provider's payloads, kept apart from ours and mapped explicitly. ---
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReplicateCreateBody(_Lenient):
    input: dict[str, Any]
    webhook: str
    webhook_events_filter: list[str]


class ReplicatePrediction(_Lenient):
    id: str
    status: str
    model: str | None = None
    output: Any = None
    error: Any = None
    logs: str | None = None
    data_removed: bool = False


class ReplicateProblem(_Lenient):
    """RFC 7807 problem details (a 429 carries only `detail`)."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: Any = None


class ReplicateSecret(_Lenient):
    key: str


def build_input(request: GenerationRequest) -> dict[str, Any]:
    """The `input` object in the model's own names (its catalogue entry's `input` and `sizes`)."""
    entry = request.model
    names = entry.input
    if request.size not in entry.sizes:
        raise InvalidRequest(
            f"size {request.size!r} is not offered by {entry.id} (offered: {', '.join(entry.sizes)})",
            param="size",
            code="invalid_value",
        )
    if request.seconds not in entry.seconds:
        offered = ", ".join(map(str, entry.seconds))
        raise InvalidRequest(
            f"seconds {request.seconds} is not offered by {entry.id} (offered: {offered})",
            param="seconds",
            code="invalid_value",
        )
    spec = entry.size(request.size)
    payload: dict[str, Any] = {names.prompt: request.prompt}
    if names.duration:
        payload[names.duration] = _duration(request.seconds, names.duration_format)
    if names.aspect_ratio and spec.aspect_ratio is not None:
        payload[names.aspect_ratio] = spec.aspect_ratio
    if names.resolution and spec.resolution is not None:
        payload[names.resolution] = spec.resolution
    if request.image_url:
        if not (entry.image and names.image):
            raise InvalidRequest(
                f"{entry.id} does not take a reference image", param="image_urls", code="invalid_value"
            )
        payload[names.image] = request.image_url
    if names.audio:
        # Said outright, not left to the model's default: the list price assumes it.
        payload[names.audio] = entry.audio
    return payload


def _duration(seconds: int, style: str) -> int | str:
    if style == "string":
        return str(seconds)
    if style == "seconds_suffix":
        return f"{seconds}s"
    return seconds


def video_url(output: Any) -> str | None:
    """The video URL in a Prediction's `output`: a string, a list of them, or an object."""
    if isinstance(output, str):
        return output if output.startswith(("https://", "http://")) else None
    if isinstance(output, list):
        return next((url for item in output if (url := video_url(item))), None)
    if isinstance(output, dict):
        keys = [key for key in _VIDEO_KEYS if key in output]
        keys += [key for key in output if key not in _VIDEO_KEYS]
        return next((url for key in keys if (url := video_url(output[key]))), None)
    return None


def progress(logs: str | None) -> int | None:
    """0-100 from the last tqdm line of the logs, as the SDK reads it; None when there is none."""
    for line in reversed((logs or "").splitlines()):
        found = _PROGRESS.match(line.strip())
        if found:
            return max(0, min(100, int(found["percentage"])))
    return None


def result_of(prediction: ReplicatePrediction) -> ProviderResult:
    """Our reading of a Prediction: only a terminal status ends a task."""
    task_id = prediction.id
    status = prediction.status
    message = str(prediction.error) if prediction.error not in (None, "") else None
    if status == "succeeded":
        url = video_url(prediction.output)
        if url:
            return ProviderResult(task_id, ProviderState.SUCCEEDED, video_url=url)
        if prediction.data_removed:
            # Replicate deletes outputs an hour after an API prediction (data-retention docs).
            return ProviderResult(
                task_id,
                ProviderState.FAILED,
                error_code="output_expired",
                error_message="The provider deleted the video before it was copied",
            )
        return ProviderResult(
            task_id, ProviderState.FAILED, error_code="no_video", error_message="No video in the result"
        )
    if status == "failed":
        return ProviderResult(
            task_id,
            ProviderState.FAILED,
            error_code="generation_failed",
            error_message=message or "The provider reported a failure",
        )
    if status == "canceled":
        return ProviderResult(
            task_id,
            ProviderState.FAILED,
            error_code="cancelled",
            error_message=message or "The prediction was canceled at the provider",
        )
    # starting, processing, or a status this adapter does not know: still running.
    return ProviderResult(task_id, ProviderState.RUNNING, progress=progress(prediction.logs))


def _problem(response: httpx.Response) -> ReplicateProblem:
    try:
        return ReplicateProblem.model_validate(response.json())
    except (ValueError, ValidationError):
        return ReplicateProblem(detail=response.text[:200] or None)


def _check(response: httpx.Response) -> None:
    """Map a non-2xx answer; a 402 (no credit) and a 404 on a model route are ours, not the client's."""
    if 200 <= response.status_code < 300:
        return
    problem = _problem(response)
    detail = str(problem.detail) if problem.detail not in (None, "") else ""
    code = problem.title or str(response.status_code)
    if response.status_code == 402:
        raise ProviderAuthFailed(
            f"The video provider refused our credentials or quota ({code}); this is not your request's fault"
        )
    raise_for_status(response, code=code, message=detail)


class ReplicatePredictions:
    name = "replicate"

    def __init__(
        self,
        client: ClientSource,
        *,
        base_url: str,
        api_token: Callable[[], str],
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client_getter(client)
        self._base_url = base_url.rstrip("/")
        self._api_token = api_token  # read per call: the secret cache picks up rotation
        self._timeout = timeout
        self._clock = clock
        self._secret: str | None = None
        self._refetched_at: float | None = None  # the last refetch after a failed check
        self._secret_lock = threading.Lock()

    # -- create ----------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        route = request.model.route
        if not _ROUTE.match(route):
            raise ConfigurationError(f"{request.model.id}: a Replicate route is owner/name, not {route!r}")
        body = ReplicateCreateBody(
            input=build_input(request), webhook=callback_url, webhook_events_filter=list(WEBHOOK_EVENTS)
        )
        owner, model = route.split("/")
        response = send(
            self._client(),
            "POST",
            f"{self._base_url}/v1/models/{owner}/{model}/predictions",
            timeout=self._timeout,
            json=body.model_dump(),
            headers=self._headers(),
        )
        if response.status_code == 404:
            raise ProviderProtocolError(f"The video provider does not know the model {route}")
        _check(response)
        try:
            return ReplicatePrediction.model_validate(json_object(response)).id
        except ValidationError as error:
            raise ProviderProtocolError("The provider's answer carried no prediction id") from error

    # -- push ------------------------------------------------------------------------------------

    def read_push(self, headers: Mapping[str, str], body: bytes) -> Push:
        lowered = {name.lower(): value for name, value in headers.items()}
        if not all(lowered.get(name) for name in _SIGNATURE_HEADERS):
            raise _bad_signature()  # no secret fetched for a push that cannot be verified anyway
        if not self._authentic(lowered, body):
            raise _bad_signature()
        try:
            prediction = ReplicatePrediction.model_validate_json(body)
        except ValidationError as error:
            raise InvalidRequest(
                "The webhook body is not a Replicate prediction", code="invalid_callback"
            ) from error
        return Push(prediction.id, result_of(prediction))

    def _authentic(self, headers: dict[str, str], body: bytes) -> bool:
        secret = self._cached_secret()
        if _verifies(secret, headers, body):
            return True
        # The account's secret may have been rotated: look it up again, but not on every forged push.
        fresh = self._refetched_secret()
        return fresh is not None and fresh != secret and _verifies(fresh, headers, body)

    def _cached_secret(self) -> str:
        with self._secret_lock:
            if self._secret is None:
                # The first push of this container: a failure here is the provider's (503), not
                # the push's; the push is judged when the secret can be read.
                self._secret = self._fetch_secret()
            return self._secret

    def _refetched_secret(self) -> str | None:
        with self._secret_lock:
            # The first failed check may look again at once (a rotation can come any time after
            # the first fetch); after that, once per interval however many forgeries arrive.
            now = self._clock()
            if self._refetched_at is not None and now - self._refetched_at < SECRET_REFETCH_INTERVAL_S:
                return None
            self._refetched_at = now
            try:
                self._secret = self._fetch_secret()
            except SoraRelayError:  # the cached secret stays; this push is refused, a later one retries
                return None
            return self._secret

    def _fetch_secret(self) -> str:
        response = send(
            self._client(),
            "GET",
            f"{self._base_url}/v1/webhooks/default/secret",
            timeout=self._timeout,
            headers=self._headers(),
        )
        _check(response)
        try:
            key = ReplicateSecret.model_validate(json_object(response)).key
        except ValidationError as error:
            raise ProviderProtocolError("The provider's webhook secret answer carried no key") from error
        if not key:
            raise ProviderProtocolError("The provider's webhook secret is empty")
        return key

    # -- lookup ----------------------------------------------------------------------------------

    def query(self, model: ModelEntry, provider_task_ids: list[str]) -> list[ProviderResult]:
        results: list[ProviderResult] = []
        client = self._client()
        for task_id in provider_task_ids:
            response = send(
                client,
                "GET",
                f"{self._base_url}/v1/predictions/{quote(task_id, safe='')}",
                timeout=self._timeout,
                headers=self._headers(),
            )
            if response.status_code == 404:
                continue
            _check(response)
            try:
                prediction = ReplicatePrediction.model_validate(json_object(response))
            except ValidationError as error:
                raise ProviderProtocolError("The provider's prediction is malformed") from error
            results.append(result_of(prediction))
        return results

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._api_token()}", "accept": "application/json"}


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The reference library's check: HMAC-SHA256 over `id.timestamp.body`, any one `v1,` entry
    matching, the timestamp within its fixed 5 minutes either way (the contract's 300 s)."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, EmptyWebhookSecretError, ValueError, TypeError):
        # ValueError: bad base64 or a malformed signature entry, a body that is not UTF-8.
        return False
    return True


def _bad_signature() -> Unauthorized:
    return Unauthorized("The webhook signature is missing, wrong or stale", code="invalid_signature")
