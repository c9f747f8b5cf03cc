"""A local webhook receiver for the client side of sora-relay's webhooks (dev-only).

It records every delivery (path, headers, raw body, what it answered), can be told to fail the
next N deliveries with a given status, and verifies a delivery the way a client would, with the
`standardwebhooks` library. A callback_url can also choose its own behaviour per event:
`{url}?fail=3&status=503` answers each event's first 3 deliveries with 503 (counted by
webhook-id), and `?status=410` always answers 410:

    with WebhookReceiver(stack.webhook_secret) as receiver:
        ... submit with callback_url=receiver.url ...
        delivery = receiver.wait_for(lambda d: d.json()["data"]["id"] == video_id, timeout=10)
        event = receiver.verify(delivery)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook

from devstack.processes import QuietHTTPServer


@dataclass(frozen=True)
class Delivery:
    """One POST as it arrived; `headers` are lower-cased, `body` is the raw bytes."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # epoch seconds
    answered: int  # the status this receiver answered with

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return 200 <= self.answered < 300


class _Server(QuietHTTPServer):
    receiver: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "webhook-receiver"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        status = self.server.receiver._record(self.path, headers, body)
        payload = json.dumps({"received": status < 300}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class WebhookReceiver:
    """Records webhook deliveries on 127.0.0.1 (a free port unless `port` is given)."""

    def __init__(self, secret: str | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret = secret
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._fail_left = 0
        self._fail_status = 500
        self._seen_per_event: dict[tuple[str, str], int] = {}

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/sora"

    def start(self) -> WebhookReceiver:
        self._server.start_background("webhook-receiver")
        return self

    def stop(self) -> None:
        self._server.stop_background()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- behaviour --

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` deliveries with `status` (then 200 again)."""
        with self._cond:
            self._fail_left = count
            self._fail_status = status

    def url_failing(self, times: int, status: int = 503) -> str:
        """A callback_url whose every event is refused `times` times with `status`, then accepted."""
        return f"{self.url}?fail={times}&status={status}"

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._cond:
            status = 200
            query = parse_qs(urlsplit(path).query)
            if "status" in query or "fail" in query:
                key = (urlsplit(path).path, headers.get("webhook-id", ""))
                seen = self._seen_per_event.get(key, 0)
                self._seen_per_event[key] = seen + 1
                chosen = int(query.get("status", ["503"])[0])
                times = int(query["fail"][0]) if "fail" in query else None
                if times is None or seen < times:
                    status = chosen
            elif self._fail_left > 0:
                self._fail_left -= 1
                status = self._fail_status
            self._deliveries.append(Delivery(path, headers, body, time.time(), status))
            self._cond.notify_all()
            return status

    # -- inspection --

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def deliveries_for(self, video_id: str) -> list[Delivery]:
        """Deliveries whose event is about `video_id` (bodies that are not JSON are skipped)."""
        found = []
        for delivery in self.deliveries:
            try:
                data = delivery.json().get("data") or {}
            except (ValueError, AttributeError):
                continue
            if data.get("id") == video_id:
                found.append(delivery)
        return found

    def wait_for(self, predicate: Callable[[Delivery], bool], timeout: float) -> Delivery:
        """The first delivery matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for delivery in self._deliveries:
                    try:
                        if predicate(delivery):
                            return delivery
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching webhook within {timeout:g}s ({len(self._deliveries)} seen)"
                    )
                self._cond.wait(remaining)

    def wait_for_video(self, video_id: str, timeout: float) -> Delivery:
        return self.wait_for(lambda delivery: delivery.json()["data"]["id"] == video_id, timeout)

    def verify(self, delivery: Delivery, secret: str | None = None) -> Any:
        """The event, verified with standardwebhooks; raises WebhookVerificationError if forged."""
        key = secret or self.secret
        if not key:
            raise ValueError("no webhook secret to verify with")
        return Webhook(key).verify(delivery.body, delivery.headers)
