"""Outbound webhooks to the client's callback_url, signed per Standard Webhooks (v1).

Headers `webhook-id` (stable for one event across retries), `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per signing secret,
space-separated: during a tenant's secret rotation both the new and the old secret sign), so clients
can verify with any Standard Webhooks library, which accepts the message when any signature matches
its secret. Only 2xx counts as delivered; redirects are not followed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from sora_relay.adapters.outbound_http import SafeHttp
from sora_relay.domain.errors import SoraRelayError


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value, by the reference implementation (`standardwebhooks`)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=event_id, timestamp=moment, data=body.decode())


def sign_all(secrets: Sequence[str], event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value signed by each secret, in the order given (newest first)."""
    if not secrets:
        raise ValueError("A webhook needs at least one signing secret")
    return " ".join(sign(secret, event_id, timestamp, body) for secret in secrets)


def event_id(task_id: str, event_type: str) -> str:
    return f"evt_{task_id.removeprefix('video_')}_{event_type.rsplit('.', 1)[-1]}"


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def event_body(event_type: str, event: str, created_at: int, data: dict[str, Any]) -> bytes:
    payload = {"id": event, "object": "event", "type": event_type, "created_at": created_at, "data": data}
    return json.dumps(payload, separators=(",", ":")).encode()


class WebhookSender:
    def __init__(self, http: SafeHttp, *, timeout_seconds: float) -> None:
        self._http = http
        self._timeout = timeout_seconds

    def deliver(
        self, url: str, *, secrets: Sequence[str], event: str, body: bytes, now: int | None = None
    ) -> DeliveryResult:
        timestamp = now if now is not None else int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "sora-relay-webhooks/1",
            "webhook-id": event,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_all(secrets, event, timestamp, body),
        }
        try:
            with self._http.stream(
                "POST",
                url,
                field="callback_url",
                headers=headers,
                content=body,
                follow_redirects=False,
                timeout=self._timeout,
            ) as response:
                status = response.status_code
        except SoraRelayError as error:
            return DeliveryResult(delivered=False, error=error.message)
        except httpx.HTTPError as error:
            return DeliveryResult(delivered=False, error=f"{type(error).__name__}: {error}"[:300])
        if 200 <= status < 300:
            return DeliveryResult(delivered=True, status_code=status)
        return DeliveryResult(delivered=False, status_code=status, error=f"HTTP {status}")
