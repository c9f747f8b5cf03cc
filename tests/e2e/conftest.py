"""End-to-end fixtures: one local stack per e2e group (tests/conftest.py: the fault suite and the DLQ
replay; the rest), each with moto's server, the provider simulator and the local gateway with the
real handlers in worker processes, driven over real HTTP on 127.0.0.1.

Waiting is always polling against a deadline; nothing assumes how long a step takes. Helpers
reach the tests as fixtures (`eventually`, `unique`, `probe_mp4`), not imports of this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devstack import processes
from devstack.__main__ import Mp4Info, probe_mp4
from devstack.load import FAST_FUNCTION_ENV, FAST_PARAMETERS, FAST_VISIBILITY_SECONDS
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack
from devstack.template import ROOT

E2E_DEFAULT_MODEL = "seedance-1.5-pro"
# The operator's mapping of the retired sora-2 (the seed's MCP tools' default model) to a live one:
# seedance makes the seed v2 tool's default 4 s at 1280x720 (tests/e2e/test_mcp.py).
MCP_ALIASES = "sora-2=seedance-1.5-pro"
CALLBACK_DELAY = 0.3  # seconds until the simulator calls back
LATE_DELAY = 1.5  # seconds until a [sim:late-callback] arrives
DEADLINE = 20.0  # the most any single wait may take before the test fails
TERMINAL = frozenset({"completed", "failed"})

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, timeout: float = DEADLINE, what: str = "a condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test at the deadline."""
    return processes.eventually(probe, timeout=timeout, what=what)


def unique(prompt: str) -> str:
    """A prompt no other test uses (the simulator counts [sim:429x2] attempts per prompt)."""
    return f"{prompt} ({uuid.uuid4().hex[:8]})"


@dataclass
class VideoApi:
    """The public API as one caller (one API key) sees it."""

    client: httpx.Client

    def create(self, prompt: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/v1/videos", json={"prompt": prompt, **fields})
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def get(self, video_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/videos/{video_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(self, video_id: str, *, timeout: float = DEADLINE) -> dict[str, Any]:
        """The video once it is completed or failed."""
        return eventually(
            lambda: video if (video := self.get(video_id))["status"] in TERMINAL else None,
            timeout=timeout,
            what=f"{video_id} to finish",
        )

    def ids(self) -> list[str]:
        response = self.client.get("/v1/videos", params={"limit": 100})
        assert response.status_code == 200, response.text
        return [video["id"] for video in response.json()["data"]]


def _client(base_url: str, api_key: str | None) -> httpx.Client:
    headers = {"x-api-key": api_key} if api_key else {}
    return processes.local_http(base_url, headers=headers)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    return eventually


@pytest.fixture(name="unique", scope="session")  # a plain function: any fixture may use it
def unique_fixture() -> Callable[[str], str]:
    return unique


@pytest.fixture(name="probe_mp4")
def probe_mp4_fixture() -> Callable[[bytes], Mp4Info]:
    return probe_mp4


# The reconciler's schedule here: every 2 s, not load.py's 1 s. Each run asks the open index 32
# queries (16 shards, two statuses), which moto answers by walking the whole table: at 1 s it was
# the idle stack's largest CPU cost. A lost callback still ends within stale-after (4 s) + 2 s.
RECONCILE_EVERY_S = 2.0


def _log_dir() -> Path:
    """One log folder per stack: under pytest-xdist each e2e group's worker runs its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return ROOT / ".devstack" / (f"e2e-logs-{worker}" if worker else "e2e-logs")


# Package scope: one stack for every test here, stopped after the last of them (idle, its pollers
# and schedule still cost CPU, which the in-process tests after e2e would pay). Under pytest-xdist
# the worker of each e2e group (tests/conftest.py) makes its own.
@pytest.fixture(scope="package")
def stack() -> Iterator[DevStack]:
    with DevStack(
        moto_port=0,
        simulator_port=0,
        gateway_port=0,
        callback_delay=CALLBACK_DELAY,
        late_callback_delay=LATE_DELAY,
        log_dir=_log_dir(),
        # Every wait shortened (provider and dispatch backoff, the webhook schedule, the
        # reconciler's thresholds); 429 still waits the simulator's Retry-After (1 s). Durable
        # dispatch gives up (and dead-letters) after 3 provider attempts, not 10.
        # sora_get_task waits 0.2 s on a pending task before answering, not 5 s (tests/e2e/test_mcp.py).
        function_env={**FAST_FUNCTION_ENV, "MCP_PENDING_WAIT_SECONDS": "0.2"},
        # The default model a test gets when it names none: one that offers the seed's 4 s and
        # 1280x720 (and renders small), so the tests of the flow are not tests of one model's table.
        parameters={**FAST_PARAMETERS, "DefaultModel": E2E_DEFAULT_MODEL, "ModelAliases": MCP_ALIASES},
        schedule_interval_s=RECONCILE_EVERY_S,
        # A crashed invocation's message comes back in seconds, not the template's 60 s / 960 s.
        queue_visibility_timeout_s=FAST_VISIBILITY_SECONDS,
        # The functions install the AWS fault hook; the fault suite adds rules to stack.chaos.
        aws_faults=True,
    ) as local:
        yield local


@pytest.fixture(scope="package")  # the stack's: a class-scoped fixture may ask for it
def dispatch(stack: DevStack) -> str:
    """How submit copes with an unavailable provider in this template: "inline" retries then 503,
    or "queue": 202 `queued`, and a function consuming the dispatch queue keeps trying."""
    assert stack.stack is not None
    environment = {**stack.stack.function_environment("SubmitFunction"), **stack.function_env}
    queue_url = environment.get("DISPATCH_QUEUE_URL")
    if not queue_url:
        return "inline"
    if not any(source.queue_url == queue_url for source in stack.event_sources):
        pytest.fail(
            "SubmitFunction queues work on DISPATCH_QUEUE_URL, but no function consumes that queue "
            "locally (a Type: SQS event on a function whose code exists)"
        )
    return "queue"


@pytest.fixture
def receiver(stack: DevStack) -> Iterator[WebhookReceiver]:
    """Checks signatures with the first tenant's secret: `videos` (and the SDK tests' client) call
    as that tenant, and a tenant's webhooks are signed with its own secret, not the service-wide
    `stack.webhook_secret` (which signs only for owners that are not tenants)."""
    with WebhookReceiver(stack.tenants[0].webhook_secret) as webhooks:
        yield webhooks


@pytest.fixture
def webhook_in(stack: DevStack) -> Callable[[str, str], dict[str, Any] | None]:
    """`webhook_in(task_id, state)`: the task's stored webhook record once it is in `state`
    (delivered, gone, failed ...), else None: a probe for `eventually`."""

    def probe(task_id: str, state: str) -> dict[str, Any] | None:
        webhook = (stack.task_item(task_id) or {}).get("webhook") or {}
        return webhook if webhook.get("state") == state else None

    return probe


@pytest.fixture
def videos(stack: DevStack) -> Iterator[VideoApi]:
    with _client(stack.api_url, stack.api_key) as client:
        yield VideoApi(client)


@pytest.fixture(scope="module")
def module_videos(stack: DevStack) -> Iterator[VideoApi]:
    """`videos` for module fixtures that start several tests' tasks together."""
    with _client(stack.api_url, stack.api_key) as client:
        yield VideoApi(client)


@pytest.fixture(scope="module")
def module_receiver(stack: DevStack) -> Iterator[WebhookReceiver]:
    """`receiver` for those tasks: one for the module (it records by video id)."""
    with WebhookReceiver(stack.tenants[0].webhook_secret) as webhooks:
        yield webhooks


@pytest.fixture
def other_videos(stack: DevStack) -> Iterator[VideoApi]:
    with _client(stack.api_url, stack.other_api_key) as client:
        yield VideoApi(client)


@pytest.fixture
def anonymous(stack: DevStack) -> Iterator[httpx.Client]:
    with _client(stack.api_url, None) as client:
        yield client


@pytest.fixture
def plain_http() -> Iterator[httpx.Client]:
    """No API key and no redirects followed: for presigned URLs and raw checks."""
    with processes.local_http() as client:
        yield client


@pytest.fixture
def cli(stack: DevStack) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the `sora-relay` CLI as a subprocess against the stack (first API key by default)."""
    script = Path(sys.executable).with_name("sora-relay")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sora_relay_cli.main"]

    def run(*args: str, api_key: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SORA_RELAY_API_URL": stack.api_url,
            "SORA_RELAY_API_KEY": api_key or stack.api_key,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    return run
