"""fal.ai queue adapter (shared/providers/fal-queue.md): one class for every fal video endpoint.

- Submit (fal-queue.md, "Submit"): `POST {queue}/{endpoint-id}?fal_webhook=<our callback URL>`
  with `Authorization: Key <key>` and the model's own input, built from its catalogue entry.
  Never `Prefer: wait`, never retried here (README rule 8): a repeat can bill twice.
- Push (fal-queue.md, "Webhook" and "Signature verification"): ED25519 over
  `request_id\\nuser_id\\ntimestamp\\nhex(sha256(body))`, checked against fal's JWKS before the
  body is even parsed; only then does its `OK`/`ERROR` count.
- Lookup (fal-queue.md, "Status, result, cancel"): `GET …/requests/{id}/status`, then the result
  for a `COMPLETED` request; `…` is `{queue}/{owner}/{alias}` (subpaths dropped).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sora_relay.adapters.providers.http import (
    ClientSource,
    client_getter,
    json_object,
    raise_for_status,
    send,
)
from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.errors import (
    InvalidRequest,
    ProviderProtocolError,
    ProviderUnavailable,
    Unauthorized,
)
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState, Push

DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
MAX_SKEW_S = 300  # fal-queue.md, Signature verification 2
JWKS_MAX_AGE_S = 24 * 3600  # ... 4: cache the keys at most 24 h
JWKS_REFETCH_MIN_S = 300  # an early refetch (key rotation) at most once per 5 minutes
# Apps in these namespaces keep their whole endpoint id in status and result URLs.
_FULL_PATH_NAMESPACES = frozenset({"workflows", "comfy"})
_HEADER_REQUEST_ID = "x-fal-webhook-request-id"
_HEADER_USER_ID = "x-fal-webhook-user-id"
_HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
_HEADER_SIGNATURE = "x-fal-webhook-signature"
EXPIRED = "provider_result_expired"


def _invalid_signature(why: str) -> Unauthorized:
    return Unauthorized(f"fal webhook refused: {why}", code="invalid_signature")


def app_base(queue_base_url: str, endpoint_id: str) -> str:
    """Where an endpoint's requests live: `{queue}/{owner}/{alias}` (fal-queue.md: subpaths of
    the endpoint id are dropped, except for apps in the `workflows/` and `comfy/` namespaces)."""
    parts = endpoint_id.strip("/").split("/")
    keep = parts if parts[0] in _FULL_PATH_NAMESPACES else parts[:2]
    return f"{queue_base_url.rstrip('/')}/{'/'.join(keep)}"


def fal_input(request: GenerationRequest) -> dict[str, Any]:
    """The endpoint's input, in the field names and spellings the catalogue entry records.

    A size's null aspect ratio or resolution is not sent (the endpoint's default). The entry's
    audio field, where it names one (`generate_audio`), is set to whether the entry offers audio,
    so the video matches the entry's listed price either way.
    """
    model = request.model
    names = model.input
    if request.size not in model.sizes:
        raise InvalidRequest(
            f"model {model.id!r} offers sizes {', '.join(model.sizes)}, not {request.size!r}",
            param="size",
        )
    if request.seconds not in model.seconds:
        offered = ", ".join(str(value) for value in model.seconds)
        raise InvalidRequest(
            f"model {model.id!r} offers {offered} seconds, not {request.seconds}", param="seconds"
        )
    spec = model.size(request.size)
    body: dict[str, Any] = {names.prompt: request.prompt}
    if names.duration:
        seconds = request.seconds
        body[names.duration] = {
            "int": seconds,
            "string": str(seconds),
            "seconds_suffix": f"{seconds}s",
        }[names.duration_format]
    if names.aspect_ratio and spec.aspect_ratio is not None:
        body[names.aspect_ratio] = spec.aspect_ratio
    if names.resolution and spec.resolution is not None:
        body[names.resolution] = spec.resolution
    if request.image_url is not None:
        if not model.image or not names.image:
            raise InvalidRequest(f"model {model.id!r} does not take a first-frame image", param="image")
        body[names.image] = request.image_url
    if names.audio:
        body[names.audio] = model.audio
    return body


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """fal's error body (fal-queue.md, "Errors"): `{"detail": "..."}` or a list of
    `{"loc", "msg", "type"}`; `error_type` in the body or the `x-fal-error-type` header."""
    code = response.headers.get("x-fal-error-type") or str(response.status_code)
    try:
        body = response.json()
    except ValueError:
        return code, response.text[:300]
    if not isinstance(body, dict):
        return code, ""
    if isinstance(body.get("error_type"), str):
        code = body["error_type"]
    return code, _describe_detail(body.get("detail"))


def _describe_detail(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if not isinstance(item, dict):
                continue
            loc = ".".join(str(part) for part in item.get("loc") or [] if part != "body")
            msg = str(item.get("msg") or item.get("type") or "invalid")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(parts)
    return ""


def _detail_type(detail: Any) -> str | None:
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                return item["type"]
    return None


def _json_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _video_url(output: Any) -> str | None:
    """The video of a model's output: `{"video": {"url", ...}}` (fal-queue.md, inferred)."""
    if not isinstance(output, dict):
        return None
    video = output.get("video")
    url = video.get("url") if isinstance(video, dict) else None
    return url if isinstance(url, str) and url else None


def _from_output(request_id: str, output: Any) -> ProviderResult:
    url = _video_url(output)
    if url is None:
        return ProviderResult(
            request_id,
            ProviderState.FAILED,
            error_code="no_video",
            error_message="fal finished the request but its output has no video",
        )
    return ProviderResult(request_id, ProviderState.SUCCEEDED, video_url=url)


class _Jwks:
    """fal's public keys: fetched on first use and kept at most 24 h; refetched early when no key
    verifies a push (a key rotation), at most once per JWKS_REFETCH_MIN_S, so a stream of forged
    pushes cannot turn into a stream of JWKS fetches."""

    def __init__(self, fetch: Callable[[], bytes], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[Any] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last fetch attempt

    def keys(self) -> list[Any]:
        with self._lock:
            if self._fetched_at is None or self._clock() - self._fetched_at >= JWKS_MAX_AGE_S:
                self._refresh()
            return list(self._keys)

    def refreshed(self) -> list[Any] | None:
        """Fresh keys after a failed verification, or None when the last attempt is too recent."""
        with self._lock:
            if self._tried_at is not None and self._clock() - self._tried_at < JWKS_REFETCH_MIN_S:
                return None
            self._refresh()
            return list(self._keys)

    def _refresh(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._tried_at = self._clock()
        raw = self._fetch()
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ProviderProtocolError("fal's JWKS is not JSON") from error
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ProviderProtocolError("fal's JWKS has no keys list")
        keys = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue
            encoded = entry.get("x")
            if not isinstance(encoded, str):
                continue
            try:
                raw_key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                keys.append(Ed25519PublicKey.from_public_bytes(raw_key))
            except ValueError:
                continue  # one malformed key must not hide the others
        self._keys = keys
        self._fetched_at = self._clock()


def _verifies(keys: list[Any], signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


class FalQueue:
    """The fal queue behind the VideoProvider interface (domain/provider.py)."""

    name = "fal"

    def __init__(
        self,
        client: ClientSource,
        *,
        queue_base_url: str,
        jwks_url: str,
        api_key: Callable[[], str],
        user_id: str | None,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`api_key` is read per call (a rotated secret takes effect at once). `user_id` is our
        fal account's id, which every push must name; None skips that check (a deployment that
        has not recorded it), leaving the signature and the caller's own request-id match."""
        self._client = client_getter(client)
        self._queue = queue_base_url.rstrip("/")
        self._jwks_url = jwks_url
        self._api_key = api_key
        self._user_id = user_id
        self._timeout = timeout
        self._clock = clock
        self._jwks = _Jwks(self._fetch_jwks, clock)

    # -- submit ------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        """fal-queue.md, "Submit": the callback URL goes in whole (token included), url-encoded."""
        model = request.model
        endpoint = model.image_route if request.image_url is not None and model.image_route else model.route
        response = send(
            self._client(),
            "POST",
            f"{self._queue}/{endpoint.strip('/')}",
            timeout=self._timeout,
            params={"fal_webhook": callback_url},
            json=fal_input(request),
            headers=self._headers(),
        )
        if not response.is_success:
            code, message = _error_detail(response)
            raise_for_status(response, code=code, message=f"fal refused the request: {message}")
        answer = json_object(response)
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderProtocolError("fal accepted the request but answered no request_id")
        return request_id

    # -- push --------------------------------------------------------------------------------

    def read_push(self, headers: Mapping[str, str], body: bytes) -> Push:
        """fal-queue.md, "Signature verification" then "Webhook". Any verification failure is
        Unauthorized `invalid_signature` and nothing else is done; `payload: null` (fal could not
        serialise the output) is a verified cue to look the request up. When fal's JWKS cannot be
        fetched, nothing is known about the push: ProviderUnavailable (a 503, which fal retries)."""
        request_id = self._verify(headers, body)
        try:
            push = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidRequest("fal webhook body is not JSON") from None
        if not isinstance(push, dict):
            raise InvalidRequest("fal webhook body is not a JSON object")
        if push.get("request_id") != request_id:
            raise _invalid_signature("the body's request_id is not the signed one")
        status = push.get("status")
        payload = push.get("payload")
        if status == "OK":
            if payload is None:
                return Push(request_id, None)
            return Push(request_id, _from_output(request_id, payload))
        if status == "ERROR":
            detail = payload.get("detail") if isinstance(payload, dict) else None
            message = "; ".join(
                part for part in (str(push.get("error") or ""), _describe_detail(detail)) if part
            )
            return Push(
                request_id,
                ProviderResult(
                    request_id,
                    ProviderState.FAILED,
                    error_code=_detail_type(detail) or "generation_failed",
                    error_message=message or "fal reported an error",
                ),
            )
        raise InvalidRequest(f"fal webhook status must be OK or ERROR, not {status!r}")

    def _verify(self, headers: Mapping[str, str], body: bytes) -> str:
        values = {
            name: headers.get(name)
            for name in (_HEADER_REQUEST_ID, _HEADER_USER_ID, _HEADER_TIMESTAMP, _HEADER_SIGNATURE)
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise _invalid_signature(f"missing {', '.join(missing)}")
        request_id, user_id, timestamp, signature_hex = (str(values[name]) for name in values)
        try:
            signed_at = int(timestamp)
        except ValueError:
            raise _invalid_signature("the timestamp is not unix seconds") from None
        if abs(self._clock() - signed_at) > MAX_SKEW_S:
            raise _invalid_signature("the timestamp is more than 5 minutes away")
        if self._user_id is not None and user_id != self._user_id:
            raise _invalid_signature("the push is for another fal user")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise _invalid_signature("the signature is not hex") from None
        message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()
        if _verifies(self._jwks.keys(), signature, message):
            return request_id
        fresh = self._jwks.refreshed()
        if fresh is not None and _verifies(fresh, signature, message):
            return request_id
        raise _invalid_signature("no fal key verifies the signature")

    def _fetch_jwks(self) -> bytes:
        response = send(self._client(), "GET", self._jwks_url, timeout=self._timeout)
        if not response.is_success:
            # Our side cannot check any push now: unavailable (fal retries), not the push's fault.
            raise ProviderUnavailable(f"fal's JWKS answered HTTP {response.status_code}")
        return response.content

    # -- lookup ------------------------------------------------------------------------------

    def query(self, model: ModelEntry, provider_task_ids: list[str]) -> list[ProviderResult]:
        """fal-queue.md, "Status, result, cancel". 404/410 read as expiry (fal keeps queue results
        about 1 h, fal-queue.md "Result lifetime"). 429/5xx raise ProviderUnavailable: the caller
        tries the whole lookup again later."""
        bases = list(
            dict.fromkeys(app_base(self._queue, route) for route in (model.route, model.image_route) if route)
        )
        return [self._lookup(bases, request_id) for request_id in provider_task_ids]

    def _lookup(self, bases: list[str], request_id: str) -> ProviderResult:
        for base in bases:
            response = self._get(f"{base}/requests/{request_id}/status")
            if response.status_code in (404, 410):
                continue  # another app base (an image route elsewhere), or expired
            self._check(response)
            return self._from_status(base, request_id, json_object(response))
        return ProviderResult(
            request_id,
            ProviderState.FAILED,
            error_code=EXPIRED,
            error_message="fal no longer knows this request (its results are kept about an hour)",
        )

    def _from_status(self, base: str, request_id: str, status: dict[str, Any]) -> ProviderResult:
        state = status.get("status")
        if state == "IN_QUEUE":
            return ProviderResult(request_id, ProviderState.PENDING)
        if state == "COMPLETED":
            if status.get("error") or status.get("error_type"):
                return ProviderResult(
                    request_id,
                    ProviderState.FAILED,
                    error_code=str(status.get("error_type") or "generation_failed"),
                    error_message=str(status.get("error") or "fal reported an error"),
                )
            return self._result(base, request_id)
        if state == "FAILED":  # met by a client project (TanStack/ai#394), not documented
            return ProviderResult(
                request_id,
                ProviderState.FAILED,
                error_code=str(status.get("error_type") or "generation_failed"),
                error_message=str(status.get("error") or "fal reported the request failed"),
            )
        # IN_PROGRESS, and any state fal adds later, counts as running (README rule 9).
        return ProviderResult(request_id, ProviderState.RUNNING)

    def _result(self, base: str, request_id: str) -> ProviderResult:
        response = self._get(f"{base}/requests/{request_id}")
        status = response.status_code
        if status in (404, 410):
            return ProviderResult(
                request_id,
                ProviderState.FAILED,
                error_code=EXPIRED,
                error_message="fal no longer keeps this request's result",
            )
        if status in (401, 403, 429) or status >= 500:
            self._check(response)  # ours or passing: raises, the lookup is tried again later
        if not response.is_success:
            # A finished request whose result is an error answer (e.g. 422): the generation failed.
            code, message = _error_detail(response)
            return ProviderResult(
                request_id,
                ProviderState.FAILED,
                error_code=_detail_type(_json_detail(response)) or "generation_failed",
                error_message=message or f"fal answered HTTP {status} ({code})",
            )
        return _from_output(request_id, json_object(response))

    def _get(self, url: str) -> httpx.Response:
        return send(self._client(), "GET", url, timeout=self._timeout, headers=self._headers())

    def _check(self, response: httpx.Response) -> None:
        if not response.is_success:
            code, message = _error_detail(response)
            raise_for_status(response, code=code, message=f"fal refused the lookup: {message}")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key()}", "Accept": "application/json"}
