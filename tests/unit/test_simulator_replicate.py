"""The simulator's Replicate dialect over real HTTP on 127.0.0.1, driven by the real adapter.

Webhooks go to a small receiver that hands every delivery to `ReplicatePredictions.read_push`
and answers as the relay would (200 accepted, 401 refused), so a signature the adapter cannot
verify, or an intermediate event it would take for a result, fails here.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import av
import httpx
import pytest

from devstack.processes import eventually
from devstack.simulator import ProviderSimulator, SimulatorConfig
from devstack.simulator.replicate import MODELS, Replicate
from sora_relay.adapters.providers.replicate import ReplicatePredictions, build_input
from sora_relay.domain import catalogue
from sora_relay.domain.errors import ProviderRejected, ProviderUnavailable, SoraRelayError
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState

TOKEN = "r8_sim_token"
DELAY = 0.2
VEO = "replicate-veo-3.1-fast"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    result: ProviderResult | None
    error: str | None


class RelayReceiver:
    """A webhook endpoint that reads each push with the adapter, as the relay's callback does."""

    def __init__(self, adapter: ReplicatePredictions) -> None:
        self.adapter = adapter
        self.deliveries: list[Delivery] = []
        self.forced: list[int] = []  # statuses to answer first, whatever the push says
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                result, error, status = None, None, 200
                try:
                    result = receiver.adapter.read_push(headers, raw).result
                except SoraRelayError as failure:
                    error, status = failure.code, failure.status_code
                with receiver._cond:
                    if receiver.forced:
                        status = receiver.forced.pop(0)
                    receiver.deliveries.append(Delivery(headers, json.loads(raw), status, result, error))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/callbacks/replicate/video_1?token=t"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivery]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout)
            assert len(self.deliveries) >= count, f"expected {count} deliveries, got {len(self.deliveries)}"
            return list(self.deliveries)

    def wait_for_terminal(self, timeout: float = 15.0) -> list[Delivery]:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(item.result and item.result.state.is_terminal for item in self.deliveries),
                timeout,
            )
            assert found, (
                f"no terminal push among {[(d.body.get('status'), d.error) for d in self.deliveries]}"
            )
            return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    config = SimulatorConfig(
        api_token="acedata-token", replicate_token=TOKEN, callback_delay_s=DELAY, late_delay_s=0.6
    )
    with ProviderSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def dialect(sim: ProviderSimulator) -> Replicate:
    return next(item for item in sim.dialects if isinstance(item, Replicate))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture
def adapter(sim: ProviderSimulator, http: httpx.Client) -> ReplicatePredictions:
    return ReplicatePredictions(http, base_url=sim.base_url("replicate"), api_token=lambda: TOKEN, timeout=10)


@pytest.fixture
def receiver(adapter: ReplicatePredictions) -> Iterator[RelayReceiver]:
    hook = RelayReceiver(adapter)
    yield hook
    hook.close()


@pytest.fixture
def api(sim: ProviderSimulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(
        base_url=sim.base_url("replicate"), headers=headers, trust_env=False, timeout=30
    ) as client:
        yield client


def generation(
    model_id: str = VEO, prompt: str = "a lighthouse at dusk", **changes: Any
) -> GenerationRequest:
    model = catalogue.default().require(model_id)
    values: dict[str, Any] = {
        "prompt": prompt,
        "model": model,
        "seconds": model.default_seconds,
        "size": model.default_size,
    }
    values.update(changes)
    return GenerationRequest(**values)


# -- the schemas the simulator holds, against the catalogue -------------------------------------


def replicate_entries() -> list[catalogue.ModelEntry]:
    return [item for item in catalogue.default().live() if item.provider == "replicate"]


def test_every_live_replicate_entry_is_a_simulated_model() -> None:
    assert {item.route for item in replicate_entries()} <= set(MODELS)


@pytest.mark.parametrize("model", replicate_entries(), ids=lambda item: item.id)
def test_every_size_and_length_of_an_entry_passes_the_models_schema(model: catalogue.ModelEntry) -> None:
    for size in model.sizes:
        for seconds in model.seconds:
            for image in (None, "https://img.example.com/first.png"):
                body = build_input(generation(model.id, size=size, seconds=seconds, image_url=image))
                _, problems = MODELS[model.route].validate(body)
                if model.route == "minimax/hailuo-02" and seconds == 10 and size != "1366x768":
                    assert problems == ["duration: 10 seconds is only available for 768p resolution"]
                else:
                    assert problems == [], (size, seconds, image)


# -- create, push, lookup ----------------------------------------------------------------------


def test_a_submitted_prediction_pushes_one_signed_completed_event_the_adapter_accepts(
    sim: ProviderSimulator, adapter: ReplicatePredictions, receiver: RelayReceiver, http: httpx.Client
) -> None:
    # When
    task_id = adapter.submit(generation(VEO, size="1280x720", seconds=4), callback_url=receiver.url)
    # Then: the terminal event, verified and read as a result
    [delivery] = receiver.wait_for_terminal()
    assert delivery.status == 200 and delivery.error is None
    assert delivery.result == ProviderResult(
        task_id, ProviderState.SUCCEEDED, video_url=delivery.body["output"]
    )
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.body["status"] == "succeeded" and delivery.body["id"] == task_id
    assert set(delivery.body) >= {
        "urls",
        "metrics",
        "logs",
        "created_at",
        "started_at",
        "completed_at",
        "input",
        "error",
    }
    # And: nothing else was pushed (the filter asks only for completed)
    assert len(receiver.deliveries) == 1
    job = sim.job(task_id)
    assert job is not None
    assert job.record["input"] == {
        "prompt": "a lighthouse at dusk",
        "duration": 4,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "generate_audio": True,
    }
    # And: the video is a real 1280x720 clip of 4 s
    video = http.get(delivery.result.video_url)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        assert container.duration / 1_000_000 == pytest.approx(4, abs=0.01)


def test_the_lookup_reads_the_same_prediction_and_leaves_unknown_ids_out(
    adapter: ReplicatePredictions, receiver: RelayReceiver
) -> None:
    # a small clip: the push waits for its render, slow on busy machines
    request = generation("replicate-seedance-1.5-pro", seconds=2)
    task_id = adapter.submit(request, callback_url=receiver.url)
    [running] = adapter.query(request.model, [task_id, "nosuchpredictionxxxxxxxxxxx"])
    assert running.state is ProviderState.RUNNING
    [pushed] = receiver.wait_for_terminal()
    [looked_up] = adapter.query(request.model, [task_id])
    assert looked_up == pushed.result


@pytest.mark.parametrize("fault", ["forged-push", "stale-push"])
def test_forged_and_stale_pushes_are_refused_and_the_genuine_one_accepted(
    sim: ProviderSimulator, adapter: ReplicatePredictions, receiver: RelayReceiver, fault: str
) -> None:
    # When
    task_id = adapter.submit(
        generation(VEO, prompt=f"a cat [sim:{fault}]", seconds=4), callback_url=receiver.url
    )
    deliveries = receiver.wait_for_terminal()
    # Then: the first push claimed success and was refused, changing nothing
    first, *_, last = deliveries
    assert first.body["status"] == "succeeded"
    assert (first.status, first.error, first.result) == (401, "invalid_signature", None)
    assert (last.status, last.result.state) == (200, ProviderState.SUCCEEDED)  # type: ignore[union-attr]
    assert len(deliveries) == 2
    job = sim.job(task_id)
    assert job is not None
    # the engine logs an attempt once its answer is read, just after the receiver saw it
    eventually(lambda: len(job.callbacks) == 2, timeout=10, what="both attempts logged")
    assert [(item["kind"], item["status"]) for item in job.callbacks] == [
        (fault.split("-")[0], 401),
        ("final", 200),
    ]
    if fault == "stale-push":
        assert int(first.headers["webhook-timestamp"]) <= time.time() - 590


def test_a_failed_generation_is_read_as_failed(
    adapter: ReplicatePredictions, receiver: RelayReceiver
) -> None:
    adapter.submit(generation(VEO, prompt="doomed [sim:fail]", seconds=4), callback_url=receiver.url)
    [delivery] = receiver.wait_for_terminal()
    assert delivery.body["status"] == "failed" and delivery.body["error"]
    assert delivery.result is not None
    assert (delivery.result.state, delivery.result.error_code) == (ProviderState.FAILED, "generation_failed")


def test_a_refused_final_webhook_is_retried_with_the_same_webhook_id(
    adapter: ReplicatePredictions, receiver: RelayReceiver
) -> None:
    receiver.forced = [500]
    adapter.submit(generation(VEO, seconds=4), callback_url=receiver.url)
    first, second = receiver.wait_for(2)
    assert (first.status, second.status) == (500, 200)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert (
        second.result is not None and second.result.state is ProviderState.SUCCEEDED
    )  # re-signed, still valid


def test_a_duplicated_final_webhook_keeps_its_webhook_id(
    adapter: ReplicatePredictions, receiver: RelayReceiver
) -> None:
    adapter.submit(
        generation(VEO, prompt="twice [sim:double-callback]", seconds=4), callback_url=receiver.url
    )
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.result == second.result


def test_only_the_completed_event_is_sent_and_only_when_the_filter_asks_for_it(
    api: httpx.Client, sim: ProviderSimulator, receiver: RelayReceiver
) -> None:
    for events in (["start", "logs", "output"], ["completed", "output"]):
        body = {"input": {"prompt": "p", "duration": 4, "resolution": "720p"}, "webhook": receiver.url}
        answer = api.post(
            "/v1/models/google/veo-3.1-fast/predictions", json=body | {"webhook_events_filter": events}
        )
        assert answer.status_code == 201, answer.text
    [delivery] = receiver.wait_for_terminal()
    eventually(lambda: all(job.terminal and job.callbacks for job in sim.jobs()[1:]), timeout=10, what="both")
    assert [len(job.callbacks) for job in sim.jobs()] == [0, 1]
    assert delivery.body["status"] == "succeeded" and delivery.body["id"] == sim.jobs()[1].id


def test_the_webhook_secret_route(api: httpx.Client, dialect: Replicate) -> None:
    answer = api.get("/v1/webhooks/default/secret")
    assert answer.status_code == 200 and answer.json() == {"key": dialect.secret}
    assert dialect.secret.startswith("whsec_")


# -- errors ------------------------------------------------------------------------------------


def test_a_throttled_create_carries_retry_after(
    adapter: ReplicatePredictions, api: httpx.Client, receiver: RelayReceiver
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.submit(generation(VEO, prompt="busy [sim:429]"), callback_url=receiver.url)
    assert caught.value.retry_after == 1
    raw = api.post("/v1/models/google/veo-3.1-fast/predictions", json={"input": {"prompt": "busy [sim:429]"}})
    assert raw.status_code == 429 and raw.headers["retry-after"] == "1"
    assert raw.json() == {"detail": "Request was throttled. Your rate limit resets in ~1s."}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": {"prompt": "p", "duration": "8"}}, "input.duration: Invalid type. Expected: integer"),
        (
            {"input": {"prompt": "p", "duration": 5}},
            "input.duration: duration must be one of the following: 4, 6, 8",
        ),
        ({"input": {"prompt": "p", "resolution": "4k"}}, "input.resolution"),
        ({"input": {"prompt": "p", "start_image": "https://x/a.png"}}, "Additional property start_image"),
        ({"input": {"duration": 8}}, "input.prompt: prompt is required"),
        ({"input": {"prompt": "p"}, "webhook_events_filter": ["done"]}, "webhook_events_filter"),
        ({"input": {"prompt": "p"}, "webhook": "ftp://x"}, "webhook"),
        ({"prompt": "p"}, "input: Invalid type. Expected: object"),
    ],
)
def test_bad_input_is_refused_with_422_problem_details(
    api: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    answer = api.post("/v1/models/google/veo-3.1-fast/predictions", json=body)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["status"] == 422 and problem["title"] == "Input validation failed"
    assert needle in problem["detail"]


def test_a_combination_the_model_refuses_reaches_the_relay_as_provider_rejected(
    adapter: ReplicatePredictions, receiver: RelayReceiver
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        adapter.submit(
            generation("replicate-hailuo-02", size="1920x1080", seconds=10), callback_url=receiver.url
        )
    assert "only available for 768p" in caught.value.message


def test_a_missing_or_wrong_token_is_401_and_unknown_things_404(
    api: httpx.Client, http: httpx.Client, sim: ProviderSimulator
) -> None:
    base = sim.base_url("replicate")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        answer = http.get(f"{base}/v1/webhooks/default/secret", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["title"] == "Unauthenticated"
    assert (
        api.post("/v1/models/nobody/nothing/predictions", json={"input": {"prompt": "p"}}).status_code == 404
    )
    assert api.get("/v1/predictions/nosuchprediction").status_code == 404
