"""A spent budget as the official openai SDK sees it: RateLimitError with OpenAI's `insufficient_quota`
type and code, raised at once, not retried (the SDK retries 429s unless told `x-should-retry: false`).

The SDK talks real HTTP to 127.0.0.1, to a small server that hands each request to the submit
function in process as API Gateway would behind the authorizer (the tenant's context attached).
It posts JSON with the SDK's own client (`client.post`): `videos.create` sends multipart, which is
another part of issue 15.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sora_relay.domain import catalogue
from tests.integration.conftest import VALID, Api
from tests.integration.tenancy import submit_event

openai = pytest.importorskip("openai")

TENANT = "ten_" + "OpenAiSdkTenant00000"
MODEL = catalogue.default().require("veo-3.1-fast")
COST = MODEL.price_microusd(MODEL.default_seconds)


@pytest.fixture
def gateway(api: Api) -> Iterator[tuple[str, list[int]]]:
    """http://127.0.0.1:<port>/v1 in front of the submit function; the statuses it answered."""
    answered: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            status, headers, answer = api.call("submit", submit_event(body, tenant=TENANT, budget=COST))
            answered.append(status)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in headers.items():
                if name not in ("content-length", "content-type"):
                    self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", answered
    finally:
        server.shutdown()
        server.server_close()


def test_a_spent_budget_is_the_sdks_rate_limit_error_and_is_not_retried(gateway):
    base_url, answered = gateway
    client = openai.OpenAI(api_key="sr_unused", base_url=base_url, max_retries=2)

    # Given the budget of one video, spent
    video = client.post("/videos", body=VALID, cast_to=object)
    assert video["object"] == "video" and answered == [202]

    # When the next video is asked for
    with pytest.raises(openai.RateLimitError) as raised:
        client.post("/videos", body=VALID, cast_to=object)

    # Then the SDK raised OpenAI's insufficient_quota at once: one request, no retry
    error = raised.value
    assert (error.status_code, error.code, error.type, error.param) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
        None,
    )
    assert "You exceeded your current quota" in error.message
    assert answered == [202, 429]
