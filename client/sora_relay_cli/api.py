"""A small typed client for the sora-relay public API (`/v1/videos`)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict, cast
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx

USER_AGENT = "sora-relay-cli/0.1.0"
# Transient answers worth another try: throttling and gateway/backend hiccups.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_DELAY = 30.0
CHUNK_SIZE = 1024 * 1024

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed"})


class VideoError(TypedDict):
    code: str
    message: str


class Video(TypedDict, total=False):
    """The API's video object; `total=False` because the CLI must tolerate fields it does not know yet."""

    id: str
    object: str
    model: str
    status: VideoStatus
    progress: int
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str
    seconds: str
    size: str
    error: VideoError | None
    callback_url: str | None
    download_url: str | None
    download_expires_at: int | None


class VideoList(TypedDict):
    object: str
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


@dataclass(frozen=True)
class Download:
    path: Path
    bytes: int
    sha256: str


class ApiError(Exception):
    """An error answer: the API's `{"error": {code, message, param}}` or any other non-2xx response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.code}: {self.message}"
        return f"{text} (param: {self.param})" if self.param else text

    @property
    def transient(self) -> bool:
        return self.status in RETRY_STATUSES or self.status >= 500


class ApiConnectionError(Exception):
    """The server could not be reached (refused, DNS, TLS, timeout); carries the URL without its query."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"could not reach {url}: {reason}")


def display_url(url: str | httpx.URL) -> str:
    # Presigned URLs carry their signature in the query string: keep it out of messages.
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; fall back to our own backoff


def error_from_response(response: httpx.Response) -> ApiError:
    """Build an ApiError from any error answer, including API Gateway's own `{"message": ...}` bodies."""
    code = response.reason_phrase.lower().replace(" ", "_") or f"http_{response.status_code}"
    message = response.reason_phrase or "request failed"
    param = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        param = str(err["param"]) if err.get("param") else None
    elif isinstance(body, dict) and isinstance(body.get("message") or body.get("Message"), str):
        message = body.get("message") or body["Message"]
    elif response.text.strip() and not response.text.lstrip().startswith("<"):
        message = response.text.strip().splitlines()[0][:200]
    return ApiError(response.status_code, code, message, param, retry_after=_retry_after(response))


class ApiClient:
    """Calls the sora-relay API at a stage URL (e.g. `https://abc.execute-api.../live`).

    Transient failures (429/5xx gateway answers, connection errors) are retried; a create is retried
    only when it carries an Idempotency-Key, so a retry can never make a second task.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30,
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"API URL must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._sleep = sleep
        # Redirects are never followed: /content answers 302 and the key must not travel to S3.
        self._api = httpx.Client(
            headers={"x-api-key": api_key, "accept": "application/json", "user-agent": USER_AGENT},
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
        )
        # A separate client with no default headers for presigned URLs, so nothing secret leaks there.
        self._plain = httpx.Client(
            headers={"user-agent": USER_AGENT}, transport=transport, timeout=timeout, follow_redirects=False
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()
        self._plain.close()

    # -- public API --------------------------------------------------------------------------------

    def create(
        self,
        prompt: str,
        *,
        model: str | None = None,
        duration: int | None = None,
        size: str | None = None,
        callback_url: str | None = None,
        image_urls: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Video:
        body: dict[str, Any] = {"prompt": prompt}
        # Only send what the caller chose, so the server's defaults stay the single source of truth.
        optional = {
            "model": model,
            "duration": duration,
            "size": size,
            "callback_url": callback_url,
            "image_urls": image_urls or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self.create_from(body, idempotency_key=idempotency_key)

    def create_from(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> Video:
        """`POST /v1/videos` with this body as it is (the MCP tools build theirs)."""
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        response = self._request(
            "POST", "/v1/videos", json=body, headers=headers, retry=bool(idempotency_key)
        )
        return cast(Video, self._json(response))

    def models(self) -> list[dict[str, Any]]:
        """The catalogue (`GET /v1/models`)."""
        return cast(list[dict[str, Any]], self._json(self._request("GET", "/v1/models"))["data"])

    def get(self, video_id: str) -> Video:
        return cast(Video, self._json(self._request("GET", f"/v1/videos/{_segment(video_id)}")))

    def list(self, *, limit: int | None = None, after: str | None = None) -> VideoList:
        params = {k: v for k, v in {"limit": limit, "after": after}.items() if v is not None}
        return cast(VideoList, self._json(self._request("GET", "/v1/videos", params=params)))

    def content_url(self, video_id: str) -> str:
        """The presigned URL the API redirects to; ApiError (404) until the video is completed."""
        response = self._request("GET", f"/v1/videos/{_segment(video_id)}/content")
        location = response.headers.get("location")
        if not response.is_redirect or not location:
            raise ApiError(response.status_code, "unexpected_response", "expected a redirect to the video")
        return urljoin(str(response.url), location)

    def download_to(self, video_id: str, path: str | os.PathLike[str]) -> Download:
        """Stream the MP4 to `path`, via a temp file renamed into place so `path` is never half-written."""
        url = self.content_url(video_id)
        target = Path(path)
        digest = hashlib.sha256()
        size = 0
        # Same directory as the target so the final rename is atomic; `x` mode respects the umask.
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with self._transport_errors(url), self._plain.stream("GET", url) as response:
                if response.status_code != 200:
                    response.read()
                    raise error_from_response(response)
                with open(tmp, "xb") as out:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                expected = response.headers.get("content-length")
                if (
                    expected is not None
                    and "content-encoding" not in response.headers
                    and int(expected) != size
                ):
                    raise ApiError(200, "incomplete_download", f"got {size} of {expected} bytes")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return Download(path=target, bytes=size, sha256=digest.hexdigest())

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _transport_errors(self, url: str | httpx.URL) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ApiConnectionError(display_url(url), f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ApiConnectionError(display_url(url), str(exc) or type(exc).__name__) from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        url = self.base_url + path
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with self._transport_errors(url):
                    response = self._api.request(method, url, params=params, json=json, headers=headers)
            except ApiConnectionError:
                if last:
                    raise
                self._sleep(self._backoff(attempt, None))
                continue
            if response.is_success or response.is_redirect:
                return response
            error = error_from_response(response)
            if last or response.status_code not in RETRY_STATUSES:
                raise error
            self._sleep(self._backoff(attempt, error.retry_after))
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _backoff(attempt: int, retry_after: float | None) -> float:
        return min(MAX_RETRY_DELAY, retry_after if retry_after is not None else 0.5 * 2**attempt)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code, "invalid_response", "the API answered with non-JSON"
            ) from exc


def _segment(value: str) -> str:
    # An id is one path segment: quote "/" and refuse dot segments, which URL normalisation would
    # resolve into another route.
    if value in ("", ".", ".."):
        raise ValueError(f"invalid video id {value!r}")
    return quote(value, safe="")
