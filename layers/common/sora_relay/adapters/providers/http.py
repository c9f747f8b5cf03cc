"""What every provider adapter does the same way over HTTP: the call, Retry-After, the error map.

The rules (shared/providers/README.md, 7 and 8): a 429 is backed off honouring `Retry-After`
(seconds or an HTTP date) or `retry-after-ms`; a 5xx or a timeout is ProviderUnavailable too, but
the caller never resends a create blindly after one; a 401/403 is our key; another 4xx is the
provider refusing what we asked.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx

from sora_relay.domain.errors import (
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)

ClientSource = httpx.Client | Callable[[], httpx.Client]


def client_getter(client: ClientSource) -> Callable[[], httpx.Client]:
    """A client, or where to get one when a request is made: a push that needs no lookup never
    builds the provider's client (and its TLS context) at all."""
    return client if callable(client) else lambda: client


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Seconds to wait before the next attempt, from `retry-after-ms` or `Retry-After`."""
    millis = response.headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def send(client: httpx.Client, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
    """One request; transport failures become ProviderUnavailable (timeouts coded as such)."""
    try:
        return client.request(method, url, timeout=timeout, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # nothing reached the provider
        raise ProviderUnavailable("The video provider could not be reached", resend_safe=True) from error
    except httpx.TimeoutException as error:
        raise ProviderUnavailable(
            "The video provider did not answer in time", code="provider_timeout"
        ) from error
    except httpx.TransportError as error:
        raise ProviderUnavailable("The connection to the video provider failed") from error


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError as error:
        raise ProviderProtocolError("The provider answered with something that is not JSON") from error
    if not isinstance(answer, dict):
        raise ProviderProtocolError("The provider answered with something that is not a JSON object")
    return answer


def raise_for_status(response: httpx.Response, *, code: str, message: str) -> None:
    """Map a non-2xx answer (`code`/`message` read from its body by the adapter) to our errors."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise ProviderUnavailable(
            f"The video provider is unavailable ({status} {code})",
            retry_after=retry_after(response),
            resend_safe=status == 429,  # throttled: nothing was accepted
        )
    if status in (401, 403):
        raise ProviderAuthFailed(
            f"The video provider refused our credentials or quota ({code}); this is not your request's fault"
        )
    if 400 <= status < 500:
        raise ProviderRejected(message or "The provider rejected the request")
    raise ProviderProtocolError(f"The video provider answered HTTP {status} ({code})")
