"""A local webhook receiver (dev-only): records every delivery and verifies it as a client would,
with `standardwebhooks`. A callback_url picks the answers: `?fail=3&status=503` (`url_failing(3)`)
refuses each event's first 3 deliveries (by webhook-id) with 503, `?status=410` always answers 410."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
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
    # Checked on arrival, as a receiver must: a signature's timestamp is good for 5 minutes only.
    verified: bool | None = None  # None: no secret to check with

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return 200 <= self.answered < 300

    def is_about(self, video_id: str) -> bool:
        """Whether the event is about the video `video_id` (False for a body that is no such event)."""
        try:
            return bool((self.json().get("data") or {}).get("id") == video_id)
        except (ValueError, AttributeError):
            return False


class WebhookReceiver:
    """Records webhook deliveries on a free port of 127.0.0.1; `secret` verifies them."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret, self._server, self._cond = secret, QuietHTTPServer(self), threading.Condition()
        self._deliveries: list[Delivery] = []
        self._seen = Counter[tuple[str, str]]()  # deliveries per (path, webhook-id)
        self.url = "http://{}:{}/hooks/sora".format(*self._server.server_address[:2])

    def url_failing(self, times: int, status: int = 503) -> str:
        """A callback_url whose every event is refused `times` times with `status`, then accepted."""
        return f"{self.url}?fail={times}&status={status}"

    def start(self) -> WebhookReceiver:
        self._server.start_background("webhook-receiver")
        return self

    def stop(self) -> None:
        self._server.stop_background()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in request.headers.items()}
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        verified = None
        if self.secret:
            try:
                self.verify(Delivery("", headers, body, 0, 0))
                verified = True
            except Exception:  # standardwebhooks raises its own WebhookVerificationError
                verified = False
        with self._cond:
            key = (url.path, headers.get("webhook-id", ""))
            self._seen[key] += 1
            # ?fail=N: the first N refused; ?status alone: every one; neither: none.
            times = int(query["fail"][0]) if "fail" in query else (None if "status" in query else 0)
            refused = times is None or self._seen[key] <= times
            status = int(query.get("status", ["503"])[0]) if refused else 200
            self._deliveries.append(Delivery(request.path, headers, body, time.time(), status, verified))
            self._cond.notify_all()
        payload = json.dumps({"received": status < 300}).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def deliveries_for(self, video_id: str) -> list[Delivery]:
        """Deliveries whose event is about `video_id`."""
        return [delivery for delivery in self.deliveries if delivery.is_about(video_id)]

    def wait_for_video(self, video_id: str, timeout: float) -> Delivery:
        """The first delivery about `video_id`, waiting up to `timeout` seconds for it."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.deliveries_for(video_id), timeout):
                seen = len(self._deliveries)
                raise TimeoutError(f"no webhook about {video_id} within {timeout:g}s ({seen} seen)")
            return self.deliveries_for(video_id)[0]

    def verify(self, delivery: Delivery) -> Any:
        """The event, verified with standardwebhooks; raises WebhookVerificationError if forged."""
        if not self.secret:
            raise ValueError("no webhook secret to verify with")
        return Webhook(self.secret).verify(delivery.body, delivery.headers)
