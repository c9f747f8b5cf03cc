"""The AceDataCloud simulator over real HTTP on 127.0.0.1: the engine (auth, callbacks, lookups,
videos, fault modes) through the veo route, and each service's create checks, result bodies and videos."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from devstack.mp4 import render_mp4
from devstack.processes import eventually
from devstack.simulator import FAULTS, ProviderSimulator, SimulatorConfig

TOKEN = "sim-test-token"
DELAY = 0.1  # callback_delay_s for the shared fixture
LATE = 0.5  # late_delay_s
DEAD_HOOK = "http://127.0.0.1:9/hook"  # nobody listens: for tests that read the lookup, not the push
_DROP = object()  # marks a field to remove from the base create body


# -- helpers and fixtures ---------------------------------------------------------------------------


@dataclass
class Delivery:
    at: float
    path: str
    headers: dict[str, str]
    body: Any


class CallbackReceiver:
    """A tiny webhook endpoint that records every POST and answers with a chosen status."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.deliveries.append(
                        Delivery(time.time(), self.path, dict(self.headers), json.loads(raw))
                    )
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout)
            assert len(self.deliveries) >= count, f"expected {count} callbacks, got {len(self.deliveries)}"
            return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    eventually(predicate, timeout=timeout)


def make_sim(**overrides: Any) -> ProviderSimulator:
    settings: dict[str, Any] = {"api_token": TOKEN, "callback_delay_s": DELAY, "late_delay_s": LATE}
    settings.update(overrides)
    return ProviderSimulator(SimulatorConfig(**settings))


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with make_sim() as simulator:
        yield simulator


@pytest.fixture
def slow_sim() -> Iterator[ProviderSimulator]:
    """Tasks never finish during the test: for pending states (stop() cancels the timers)."""
    with make_sim(callback_delay_s=30.0) as simulator:
        yield simulator


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    hook = CallbackReceiver()
    yield hook
    hook.close()


@cache
def tls() -> ssl.SSLContext:
    # httpx loads the CA bundle for every new client (~40 ms); one shared context keeps tests fast.
    return ssl.create_default_context()


def api(simulator: ProviderSimulator, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=simulator.url, headers=headers, timeout=10, verify=tls())


@pytest.fixture(scope="module")
def web() -> Iterator[httpx.Client]:
    """A plain client for absolute URLs (video links, control routes, unauthenticated calls)."""
    with httpx.Client(timeout=30, verify=tls()) as http:
        yield http


@pytest.fixture
def client(sim: ProviderSimulator) -> Iterator[httpx.Client]:
    with api(sim) as http:
        yield http


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "text2video",
        "prompt": "a lighthouse at dusk",
        "callback_url": DEAD_HOOK,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not _DROP}


def retrieve(http: httpx.Client, task_id: str, service: str = "veo") -> dict[str, Any]:
    answer = http.post(f"/{service}/tasks", json={"action": "retrieve_batch", "ids": [task_id]})
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()["items"]
    return dict(record)


def finished(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Create a veo task and wait for its result body."""
    answer = http.post("/veo/videos", json=body)
    assert answer.status_code == 200, answer.text
    return dict(wait_finished(http, answer.json()["task_id"])["response"])


def wait_finished(http: httpx.Client, task_id: str) -> dict[str, Any]:
    wait_until(lambda: "response" in retrieve(http, task_id))
    return retrieve(http, task_id)


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"success", "error", "trace_id"}
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    uuid.UUID(body["trace_id"])
    return dict(body)


def submit_with_callback(http: httpx.Client, hook: CallbackReceiver, prompt: str) -> str:
    answer = http.post("/veo/videos", json=create_body(prompt=prompt, callback_url=hook.url))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["task_id"])


def probe(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {
            "seconds": container.duration / 1_000_000,
            "width": stream.width,
            "height": stream.height,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.format.name,
            "frames": frames,
            "title": container.metadata.get("title"),
        }


# -- basics and auth --------------------------------------------------------------------------------


def test_unknown_route_is_no_api(client: httpx.Client) -> None:
    assert_error(client.post("/veo/images", json={}), 404, "no_api")


@pytest.mark.parametrize("path", ["/veo/videos", "/veo/tasks"])
@pytest.mark.parametrize(
    ("header", "status", "code"),
    [(None, 400, "no_token"), ("", 400, "no_token"), ("Bearer", 400, "no_token")]
    + [(bad, 401, "invalid_token") for bad in ("Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x")],
)
def test_a_missing_token_is_no_token_and_a_wrong_one_invalid_token(
    web: httpx.Client, sim: ProviderSimulator, path: str, header: str | None, status: int, code: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    answer = web.post(f"{sim.url}{path}", json=create_body(), headers=headers)
    assert_error(answer, status, code)
    assert sim.jobs() == []


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "\u00b2", str(1 << 30)])
def test_a_bad_content_length_is_bad_request(sim: ProviderSimulator, length: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        connection.putrequest("POST", "/veo/videos")
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.putheader("Content-Length", length)  # and no body: a hang, were it read
        connection.endheaders()
        answer = connection.getresponse()
        body = assert_error(httpx.Response(answer.status, content=answer.read()), 400, "bad_request")
    finally:
        connection.close()
    assert "Content-Length" in body["error"]["message"]
    assert sim.jobs() == []


# -- create validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompt": _DROP}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"action": _DROP}, "action"),
        ({"action": "get1080p"}, "action"),  # an action on an earlier video: not simulated
        ({"model": "sora-2"}, "model"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"aspect_ratio": 16}, "aspect_ratio"),
        ({"translation": "yes"}, "translation"),
        ({"image_urls": "https://example.com/a.png"}, "image_urls"),
        ({"image_urls": [1]}, "image_urls"),
        ({"callback_url": _DROP}, "callback_url"),  # the callback mode is the only one simulated
        ({"callback_url": 5}, "callback_url"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"async": "yes"}, "async"),
    ],
)
def test_invalid_create_is_bad_request_naming_the_field(
    sim: ProviderSimulator, client: httpx.Client, overrides: dict[str, Any], field: str
) -> None:
    body = assert_error(client.post("/veo/videos", json=create_body(**overrides)), 400, "bad_request")
    assert field in body["error"]["message"]
    assert sim.jobs() == []


@pytest.mark.parametrize("content", [b"not json", b"", b"[1, 2]", b'"text"'])
def test_non_object_body_is_bad_request(client: httpx.Client, content: bytes) -> None:
    answer = client.post("/veo/videos", content=content, headers={"Content-Type": "application/json"})
    assert_error(answer, 400, "bad_request")


# -- the callback -------------------------------------------------------------------------


def test_callback_is_delivered_with_the_documented_body(
    web: httpx.Client, sim: ProviderSimulator, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    # Given a create call with a callback_url
    images = ["https://example.com/first.png"]
    body = create_body(action="image2video", callback_url=receiver.url, image_urls=images)
    started = time.time()

    # When it is submitted
    answer = client.post("/veo/videos", json=body)

    # Then it answers with the task id
    assert answer.status_code == 200
    assert set(answer.json()) == {"success", "task_id"}
    assert answer.json()["success"] is True
    task_id = answer.json()["task_id"]
    uuid.UUID(task_id)

    # And after the delay the success callback arrives in the documented shape
    (delivery,) = receiver.wait_for(1)
    assert delivery.at - started >= DELAY
    assert delivery.headers["Content-Type"] == "application/json"
    callback = delivery.body
    assert set(callback) == {"success", "task_id", "trace_id", "data"}
    assert callback["success"] is True
    assert callback["task_id"] == task_id
    uuid.UUID(callback["trace_id"])
    (video,) = callback["data"]
    assert set(video) == {"id", "video_url", "created_at", "complete_at", "state"}
    assert video["state"] == "succeeded"
    assert video["video_url"] == f"{sim.url}/files/{task_id}.mp4"

    # And the provider's record matches it
    record = retrieve(client, task_id)
    assert record["id"] == task_id
    assert record["type"] == "videos"
    assert record["request"] == body
    assert record["response"] == callback
    assert record["trace_id"] == callback["trace_id"]
    assert isinstance(record["created_at"], float)
    assert record["created_at"] <= record["started_at"] < record["finished_at"]
    assert record["finished_at"] - record["created_at"] >= DELAY

    # And the task's state shows one attempt that the receiver accepted (logged once the receiver
    # has answered, so a moment after the receiver has the push)
    wait_until(lambda: bool((sim.task_state(task_id) or {}).get("callbacks")))
    state = sim.task_state(task_id)
    assert state is not None
    assert state["record"] == record
    assert state["fault"] == "none"
    assert [(a["url"], a["status"], a["error"]) for a in state["callbacks"]] == [(receiver.url, 200, None)]


def test_a_failing_receiver_is_recorded_and_not_retried(sim: ProviderSimulator, client: httpx.Client) -> None:
    hook = CallbackReceiver(status=500)
    try:
        task_id = submit_with_callback(client, hook, "a receiver that errors")
        hook.wait_for(1)
        time.sleep(3 * DELAY)
        assert len(hook.deliveries) == 1
        state = sim.task_state(task_id)
        assert state is not None
        assert [attempt["status"] for attempt in state["callbacks"]] == [500]
    finally:
        hook.close()


def test_an_unreachable_receiver_is_recorded_as_an_error(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    body = create_body(callback_url=f"http://127.0.0.1:{port}/hook")
    task_id = client.post("/veo/videos", json=body).json()["task_id"]

    wait_until(lambda: bool((sim.task_state(task_id) or {}).get("callbacks")))
    state = sim.task_state(task_id)
    assert state is not None
    (attempt,) = state["callbacks"]
    assert attempt["status"] is None
    assert "ConnectError" in attempt["error"]


def test_callback_mode_answers_before_the_task_finishes(
    slow_sim: ProviderSimulator, receiver: CallbackReceiver
) -> None:
    with api(slow_sim) as http:
        started = time.monotonic()
        answer = http.post("/veo/videos", json=create_body(callback_url=receiver.url))
        assert time.monotonic() - started < 5  # the task itself takes 30 s
        assert answer.status_code == 200
        assert answer.json() == {"success": True, "task_id": answer.json()["task_id"]}
        assert "response" not in retrieve(http, answer.json()["task_id"])
    assert receiver.deliveries == []


# -- /veo/tasks -------------------------------------------------------------------------------------


def test_retrieve_shows_pending_then_finished(
    sim: ProviderSimulator, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job's timers are held and then run by hand: with the shared 0.1 s delay, a busy machine
    # let the job finish before the first retrieve (seen once in CI).
    held: list[tuple[float, Callable[[], object]]] = []
    monkeypatch.setattr(sim, "schedule", lambda delay, action: held.append((delay, action)))
    task_id = client.post("/veo/videos", json=create_body()).json()["task_id"]
    pending = retrieve(client, task_id)
    assert "response" not in pending
    assert held, "the job finishes on the simulator's timers"
    for _, action in sorted(held, key=lambda timer: timer[0]):  # running at delay/4, then done
        action()
    finished = retrieve(client, task_id)
    assert finished["response"]["success"] is True
    assert {key: finished[key] for key in pending} == pending  # finishing only adds fields


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["x"]},
        {"action": "retrieve", "id": "x"},  # the single lookup: the relay uses the batch only
        {"action": "delete", "id": "x"},
        {"action": "retrieve_batch", "ids": [5]},
        {"action": "retrieve_batch", "ids": "x"},
        {"action": "retrieve_batch"},
        [1],
    ],
)
def test_bad_task_queries_are_bad_request(client: httpx.Client, body: Any) -> None:
    assert_error(client.post("/veo/tasks", json=body), 400, "bad_request")


def test_retrieve_batch_returns_known_items_in_order(client: httpx.Client) -> None:
    ids = [client.post("/veo/videos", json=create_body()).json()["task_id"] for _ in range(3)]
    answer = client.post("/veo/tasks", json={"action": "retrieve_batch", "ids": [*ids, str(uuid.uuid4())]})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"items", "count"}
    assert body["count"] == 3
    assert [item["id"] for item in body["items"]] == ids
    assert all(item["type"] == "videos" for item in body["items"])


def test_retrieve_batch_accepts_50_ids_and_refuses_51(client: httpx.Client) -> None:
    ids = [str(uuid.uuid4()) for _ in range(51)]
    ok = client.post("/veo/tasks", json={"action": "retrieve_batch", "ids": ids[:50]})
    assert ok.status_code == 200
    assert ok.json() == {"items": [], "count": 0}
    refused = client.post("/veo/tasks", json={"action": "retrieve_batch", "ids": ids})
    assert "ids" in assert_error(refused, 400, "bad_request")["error"]["message"]


def test_a_record_is_a_copy(sim: ProviderSimulator, client: httpx.Client) -> None:
    task_id = client.post("/veo/videos", json=create_body()).json()["task_id"]
    snapshot = sim.record(task_id)
    assert snapshot is not None
    snapshot["type"] = "tampered"
    assert (sim.record(task_id) or {})["type"] == "videos"


# -- the served video ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "resolution", "size"),
    [("16:9", None, "1280x720"), (None, None, "1280x720"), ("9:16", "1080p", "1080x1920")],
)
def test_served_video_is_a_real_mp4_of_the_requested_shape(
    web: httpx.Client, client: httpx.Client, ratio: str | None, resolution: str | None, size: str
) -> None:
    # Given a finished task (None = leave the field to its documented default)
    body = create_body(aspect_ratio=ratio or _DROP, resolution=resolution or _DROP)
    result = finished(client, body)

    # When its video_url is fetched
    video = web.get(result["data"][0]["video_url"])

    # Then it is an H.264 MP4 of exactly the requested size and duration
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert int(video.headers["Content-Length"]) == len(video.content)
    width, height = (int(part) for part in size.split("x"))
    seconds = 8  # Veo takes no duration
    assert probe(video.content) == {
        "seconds": pytest.approx(seconds, abs=1e-3),
        "width": width,
        "height": height,
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "frames": seconds * 4,
        "title": result["task_id"],
    }


def test_videos_differ_per_task_and_are_rendered_once(
    web: httpx.Client, sim: ProviderSimulator, client: httpx.Client
) -> None:
    first, second = (finished(client, create_body()) for _ in range(2))
    first_url, second_url = (task["data"][0]["video_url"] for task in (first, second))

    first_bytes = web.get(first_url).content
    first_file = sim.video_dir / f"{first['task_id']}.mp4"
    rendered_at = first_file.stat().st_mtime_ns
    again = web.get(first_url).content
    second_bytes = web.get(second_url).content

    assert hashlib.sha256(first_bytes).digest() != hashlib.sha256(second_bytes).digest()
    assert again == first_bytes
    assert first_file.stat().st_mtime_ns == rendered_at  # served from the cache, not re-rendered
    assert sorted(path.name for path in sim.video_dir.iterdir()) == sorted(
        f"{task['task_id']}.mp4" for task in (first, second)
    )


def test_head_on_a_video_gives_its_length(web: httpx.Client, client: httpx.Client) -> None:
    url = finished(client, create_body())["data"][0]["video_url"]
    head = web.head(url)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(web.get(url).content)


def test_video_of_unknown_or_unfinished_task_is_404(slow_sim: ProviderSimulator) -> None:
    with api(slow_sim) as http:
        task_id = http.post("/veo/videos", json=create_body()).json()["task_id"]
        assert http.get(f"/files/{task_id}.mp4").status_code == 404
        assert http.get(f"/files/{uuid.uuid4()}.mp4").status_code == 404


# -- fault modes ---------------------------------------------------------------------------------------

# Every mode in the table must have a test below; a new mode without one fails this check.
TESTED_MODES = {"none", "fail", "no-callback", "double-callback", "late-callback", "video-404", "video-503"}
TESTED_MODES |= {"429", "500", "504", "forged-push", "stale-push", "expired-url"}


def test_every_fault_mode_is_covered() -> None:
    assert set(FAULTS) == TESTED_MODES


def test_fault_none_behaves_normally(client: httpx.Client, receiver: CallbackReceiver) -> None:
    task_id = submit_with_callback(client, receiver, "[sim:none] calm sea")
    (delivery,) = receiver.wait_for(1)
    assert delivery.body["success"] is True
    assert delivery.body["task_id"] == task_id


def test_fault_fail_sends_the_failure_callback(
    web: httpx.Client, sim: ProviderSimulator, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    task_id = submit_with_callback(client, receiver, "[sim:fail] a doomed clip")
    (delivery,) = receiver.wait_for(1)
    record = retrieve(client, task_id)
    assert delivery.body == {
        "success": False,
        "task_id": task_id,
        "trace_id": record["trace_id"],
        "error": {"code": "api_error", "message": "simulated generation failure"},
    }
    assert record["response"] == delivery.body
    assert web.get(f"{sim.url}/files/{task_id}.mp4").status_code == 404


def test_fault_no_callback_finishes_but_never_calls_back(
    sim: ProviderSimulator, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    task_id = submit_with_callback(client, receiver, "[sim:no-callback] lost in the post")
    assert wait_finished(client, task_id)["response"]["success"] is True
    time.sleep(3 * DELAY)
    assert receiver.deliveries == []
    state = sim.task_state(task_id)
    assert state is not None
    assert state["callbacks"] == []


def test_fault_double_callback_sends_the_same_body_twice(
    sim: ProviderSimulator, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    task_id = submit_with_callback(client, receiver, "[sim:double-callback] echo")
    first, second = receiver.wait_for(2)
    time.sleep(3 * DELAY)
    assert len(receiver.deliveries) == 2
    assert first.body == second.body
    assert first.body["task_id"] == task_id
    state = sim.task_state(task_id)
    assert state is not None
    assert [attempt["status"] for attempt in state["callbacks"]] == [200, 200]
    # One after the other, not at once: the second push was sent once the first had been answered
    # (an order, not a wall-clock bound, which a busy machine stretches)
    earlier, later = state["callbacks"]
    assert later["at"] >= earlier["at"] + earlier["seconds"]


def test_fault_late_callback_finishes_on_time_but_calls_back_late(
    client: httpx.Client, receiver: CallbackReceiver
) -> None:
    started = time.time()
    task_id = submit_with_callback(client, receiver, "[sim:late-callback] tardy")
    record = wait_finished(client, task_id)
    assert record["finished_at"] - started < LATE
    assert receiver.deliveries == []
    (delivery,) = receiver.wait_for(1)
    assert delivery.at - started >= LATE
    assert delivery.body == record["response"]


def test_fault_video_404_succeeds_with_a_missing_video(
    web: httpx.Client, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    submit_with_callback(client, receiver, "[sim:video-404] vanishing")
    (delivery,) = receiver.wait_for(1)
    assert delivery.body["success"] is True
    video_url = delivery.body["data"][0]["video_url"]
    assert web.get(video_url).status_code == 404
    assert web.head(video_url).status_code == 404


def test_fault_video_503_fails_the_first_two_downloads_then_serves_the_video(
    web: httpx.Client, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    submit_with_callback(client, receiver, "[sim:video-503] flaky cdn")
    (delivery,) = receiver.wait_for(1)
    video_url = delivery.body["data"][0]["video_url"]
    assert [web.get(video_url).status_code for _ in range(3)] == [503, 503, 200]
    assert web.get(video_url).content[4:8] == b"ftyp"


@pytest.mark.parametrize("mode", ["forged-push", "stale-push"])
def test_forged_push_carries_a_wrong_token_before_the_real_callback(
    client: httpx.Client, receiver: CallbackReceiver, mode: str
) -> None:
    # AceData signs nothing: a forgery can only guess the per-task token in the URL.
    submit_with_callback(client, receiver, f"[sim:{mode}] who sent this")
    forged, genuine = receiver.wait_for(2)
    assert "token=forged-" in forged.path and "token=forged-" not in genuine.path
    assert genuine.body["success"] is True


def test_fault_expired_url_stops_serving_the_video_after_its_lifetime(
    web: httpx.Client, receiver: CallbackReceiver
) -> None:
    # The link lapses as the job finishes; the late push comes after it.
    with make_sim(late_delay_s=DELAY + 1.3) as simulator, api(simulator) as http:
        submit_with_callback(http, receiver, "[sim:expired-url] fleeting")
        (delivery,) = receiver.wait_for(1)  # late: after the link lapsed
        assert web.get(delivery.body["data"][0]["video_url"]).status_code == 403


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("429", 429, "too_many_requests"), ("500", 500, "api_error"), ("504", 504, "timeout")],
)
def test_create_faults_refuse_every_attempt(
    sim: ProviderSimulator, client: httpx.Client, mode: str, status: int, code: str
) -> None:
    for _ in range(3):
        answer = client.post("/veo/videos", json=create_body(prompt=f"[sim:{mode}] busy"))
        assert_error(answer, status, code)
        assert answer.headers.get("Retry-After") == ("1" if status == 429 else None)
    assert sim.jobs() == []


@pytest.mark.parametrize(("mode", "status"), [("429x2", 429), ("500x2", 500), ("504x1", 504)])
def test_counted_create_faults_fail_only_the_first_attempts_of_that_prompt(
    sim: ProviderSimulator, client: httpx.Client, mode: str, status: int
) -> None:
    limit = int(mode.split("x")[1])
    body = create_body(prompt=f"[sim:{mode}] retry me")
    statuses = [client.post("/veo/videos", json=body).status_code for _ in range(limit + 2)]
    assert statuses == [status] * limit + [200, 200]
    # Another prompt has its own count.
    other = create_body(prompt=f"[sim:{mode}] another")
    assert client.post("/veo/videos", json=other).status_code == status
    assert len(sim.jobs()) == 2


@pytest.mark.parametrize("marker", ["[sim:explode]", "[sim:failx2]", "[sim:429x0]"])
def test_unknown_fault_marker_is_bad_request(client: httpx.Client, marker: str) -> None:
    answer = client.post("/veo/videos", json=create_body(prompt=f"{marker} hello"))
    assert "prompt" in assert_error(answer, 400, "bad_request")["error"]["message"]


# -- choosing the default fault ------------------------------------------------------------------------


def test_config_fault_applies_to_every_task(receiver: CallbackReceiver) -> None:
    with make_sim(fault="fail") as simulator, api(simulator) as http:
        submit_with_callback(http, receiver, "first")
        submit_with_callback(http, receiver, "second")
        deliveries = receiver.wait_for(2)
    assert [delivery.body["success"] for delivery in deliveries] == [False, False]


def test_prompt_marker_overrides_the_default_fault(receiver: CallbackReceiver) -> None:
    with make_sim(fault="fail") as simulator, api(simulator) as http:
        submit_with_callback(http, receiver, "[sim:none] spared")
        (delivery,) = receiver.wait_for(1)
    assert delivery.body["success"] is True


def test_unknown_fault_in_config_raises() -> None:
    with pytest.raises(ValueError, match="unknown simulator fault"):
        make_sim(fault="explode")


# -- lifecycle ----------------------------------------------------------------------------------------


def test_stop_cancels_pending_callbacks_and_closes_the_port(
    web: httpx.Client, receiver: CallbackReceiver
) -> None:
    simulator = make_sim(callback_delay_s=0.3).start()
    with api(simulator) as http:
        submit_with_callback(http, receiver, "never delivered")
    url = simulator.url

    started = time.monotonic()
    simulator.stop()
    assert time.monotonic() - started < 1.0

    time.sleep(0.5)
    assert receiver.deliveries == []
    with pytest.raises(httpx.ConnectError):
        web.get(f"{url}/files/{uuid.uuid4()}.mp4")


def test_stop_removes_its_temporary_video_dir(web: httpx.Client) -> None:
    with make_sim() as owned, api(owned) as http:
        assert web.get(finished(http, create_body())["data"][0]["video_url"]).status_code == 200
        owned_dir = owned.video_dir
        assert len(list(owned_dir.glob("*.mp4"))) == 1
    assert not owned_dir.exists()


# -- the renderer on its own ----------------------------------------------------------------------------


def test_render_mp4_to_a_file_object_reports_the_bytes_written() -> None:
    buffer = io.BytesIO()
    written = render_mp4(buffer, width=320, height=240, seconds=2, seed="seed-a", fps=5)
    assert written == len(buffer.getvalue()) > 0
    info = probe(buffer.getvalue())
    assert (info["width"], info["height"], info["frames"], info["title"]) == (320, 240, 10, "seed-a")
    assert info["seconds"] == pytest.approx(2.0, abs=1e-3)


def test_render_mp4_to_a_path_is_deterministic_per_seed(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.mp4" for name in ("a1", "a2", "b")]
    for path, seed in zip(paths, ["a", "a", "b"], strict=True):
        assert render_mp4(path, width=160, height=96, seconds=1, seed=seed) == path.stat().st_size
    a1, a2, b = (path.read_bytes() for path in paths)
    assert a1 == a2
    assert a1 != b


@pytest.mark.parametrize(
    ("width", "height", "seconds", "fps"),
    [(321, 240, 1, 4), (320, 0, 1, 4), (320, 240, 0, 4), (320, 240, 1.1, 4), (320, 240, 1, 0)],
)
def test_render_mp4_refuses_shapes_it_cannot_render_exactly(
    width: int, height: int, seconds: float, fps: int
) -> None:
    with pytest.raises(ValueError):
        render_mp4(io.BytesIO(), width=width, height=height, seconds=seconds, seed="s", fps=fps)


# -- the live AceData services (acedata-video.md) -----------------------------------------------------

IMAGE_URL = "https://example.com/first.png"
# A valid create body per service, as small as its request table allows.
SERVICE_BODIES: dict[str, dict[str, Any]] = {
    "sora": {"model": "sora-2", "version": "2.0", "prompt": "a heron"},  # the retired route (acedata-sora.md)
    "veo": {"action": "text2video", "model": "veo31-fast", "prompt": "a heron"},
    "kling": {"action": "text2video", "model": "kling-v2-5-turbo", "prompt": "a heron"},
    "seedance": {"model": "doubao-seedance-1-5-pro-251215", "content": [{"type": "text", "text": "a heron"}]},
    "wan": {"model": "wan2.6-t2v", "prompt": "a heron"},
}


def service_body(service: str, **overrides: Any) -> dict[str, Any]:
    body = {**SERVICE_BODIES[service], "callback_url": DEAD_HOOK, **overrides}
    return {key: value for key, value in body.items() if value is not _DROP}


def finished_response(http: httpx.Client, service: str, task_id: str) -> dict[str, Any]:
    wait_until(lambda: "response" in retrieve(http, task_id, service))
    return dict(retrieve(http, task_id, service)["response"])


@pytest.mark.parametrize("service", SERVICE_BODIES)
@pytest.mark.parametrize("path", ["videos", "tasks"])
def test_every_service_route_wants_the_token(
    web: httpx.Client, sim: ProviderSimulator, service: str, path: str
) -> None:
    url = f"{sim.url}/{service}/{path}"
    assert_error(web.post(url, json=service_body(service)), 400, "no_token")
    assert_error(
        web.post(url, json=service_body(service), headers={"Authorization": "Bearer x"}), 401, "invalid_token"
    )


# The success body of each service (acedata-video.md, "Callback and result body per service"):
# the keys, where the video URL sits and the success word.
RESULT_SHAPES: dict[
    str, tuple[set[str], Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]
] = {
    "sora": (
        {"data"},
        lambda body: body["data"][0]["video_url"],
        lambda body: (
            body["data"][0]["state"] == "succeeded"
            and body["data"][0]["id"].startswith("sora-2:task_")
            and set(body["data"][0]) == {"id", "video_url", "state"}
        ),
    ),
    "veo": (
        {"data"},
        lambda body: body["data"][0]["video_url"],
        lambda body: (
            body["data"][0]["state"] == "succeeded"
            and set(body["data"][0]) == {"id", "video_url", "created_at", "complete_at", "state"}
        ),
    ),
    "kling": (
        {"video_id", "video_url", "duration", "state"},
        lambda body: body["video_url"],
        lambda body: body["state"] == "succeed" and body["duration"] == "5.0",
    ),
    "seedance": (
        {"data"},
        lambda body: body["data"][0]["content"]["video_url"],
        lambda body: (
            body["data"][0]["status"] == "succeeded"
            and body["data"][0]["id"].startswith("cgt-")
            and body["data"][0]["usage"]["completion_tokens"] > 0
        ),
    ),
    "wan": (
        {"video_url", "state"},
        lambda body: body["video_url"],
        lambda body: body["state"] == "completed",
    ),
}


@pytest.mark.parametrize("service", SERVICE_BODIES)
def test_each_service_answers_its_documented_result_body(
    sim: ProviderSimulator, client: httpx.Client, service: str
) -> None:
    # Given an accepted create call
    answer = client.post(f"/{service}/videos", json=service_body(service))
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task_id"]

    # When the task has finished
    response = finished_response(client, service, task_id)

    # Then its response is the service's body with the platform's envelope
    keys, video_url, looks_right = RESULT_SHAPES[service]
    assert set(response) == {"success", "task_id", "trace_id"} | keys
    assert (response["success"], response["task_id"]) == (True, task_id)
    assert video_url(response) == f"{sim.url}/files/{task_id}.mp4"
    assert looks_right(response)


@pytest.mark.parametrize(
    ("service", "overrides", "field"),
    [
        ("sora", {"prompt": _DROP}, "prompt"),
        ("sora", {"model": _DROP}, "model"),
        ("sora", {"model": "sora-1"}, "model"),
        ("sora", {"version": _DROP}, "version"),
        ("sora", {"version": "1.0"}, "version"),
        ("sora", {"version": True}, "version"),
        ("sora", {"version": 2.0}, "version"),
        ("sora", {"duration": 10}, "duration"),
        ("sora", {"duration": "4"}, "duration"),
        ("sora", {"size": "small"}, "size"),
        ("sora", {"size": "1792x1024"}, "size"),  # sora-2-pro only
        ("sora", {"size": "1024x1792"}, "size"),
        ("sora", {"image_urls": IMAGE_URL}, "image_urls"),
        ("sora", {"callback_url": _DROP}, "callback_url"),
        ("veo", {"action": _DROP}, "action"),
        ("veo", {"model": "veo9"}, "model"),
        ("veo", {"prompt": ""}, "prompt"),
        ("veo", {"image_urls": [IMAGE_URL]}, "image_urls"),  # text2video takes no image
        ("veo", {"action": "image2video"}, "image_urls"),
        ("veo", {"action": "image2video", "image_urls": [IMAGE_URL] * 4}, "image_urls"),
        ("veo", {"aspect_ratio": "4:3"}, "aspect_ratio"),
        ("veo", {"resolution": "1080P"}, "resolution"),  # lower case only
        ("veo", {"resolution": "4k"}, "resolution"),  # veo31 only
        ("veo", {"model": "veo31-fast-ingredients"}, "ingredients"),
        ("kling", {"action": "animate"}, "action"),
        ("kling", {"model": "kling-v9"}, "model"),
        ("kling", {"duration": 7}, "duration"),
        ("kling", {"duration": "5"}, "duration"),
        ("kling", {"model": "kling-v3", "duration": 16}, "duration"),
        ("kling", {"aspect_ratio": "4:3"}, "aspect_ratio"),
        ("kling", {"mode": "fast"}, "mode"),
        ("kling", {"cfg_scale": 2}, "cfg_scale"),
        ("kling", {"start_image_url": IMAGE_URL}, "image2video"),
        ("kling", {"action": "image2video"}, "start_image_url"),
        (
            "kling",
            {
                "action": "image2video",
                "start_image_url": IMAGE_URL,
                "end_image_url": IMAGE_URL,
                "duration": 10,
            },
            "duration",
        ),
        ("seedance", {"model": _DROP}, "model"),
        ("seedance", {"content": []}, "content"),
        ("seedance", {"content": [{"type": "image_url", "image_url": IMAGE_URL}]}, "image_url"),
        ("seedance", {"content": [{"type": "video", "text": "x"}]}, "type"),
        ("seedance", {"duration": 3}, "duration"),  # 1.5 pro: 4 to 12
        ("seedance", {"duration": 13}, "duration"),
        ("seedance", {"ratio": "2:1"}, "ratio"),
        ("seedance", {"resolution": "720P"}, "resolution"),  # lower case only
        ("seedance", {"execution_expires_after": 60}, "execution_expires_after"),
        (
            "seedance",
            {
                "model": "doubao-seedance-1-0-lite-t2v-250428",
                "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}, "role": "first_frame"}],
            },
            "i2v",
        ),
        ("seedance", {"model": "doubao-seedance-1-0-lite-i2v-250428"}, "image_url"),
        ("wan", {"model": _DROP}, "model"),
        ("wan", {"prompt": _DROP}, "prompt"),
        ("wan", {"model": "wan2.6-i2v"}, "action"),  # text2video takes only wan2.6-t2v
        ("wan", {"action": "image2video", "model": "wan2.6-i2v"}, "image_url"),
        ("wan", {"image_url": IMAGE_URL}, "image_url"),
        ("wan", {"duration": 8}, "duration"),
        ("wan", {"size": "1280x720"}, "size"),
        ("wan", {"size": "1281*720"}, "size"),
        ("wan", {"resolution": "720p"}, "resolution"),  # upper case only
        ("wan", {"shot_type": "few"}, "shot_type"),
    ],
)
def test_invalid_service_create_is_bad_request_naming_the_field(
    sim: ProviderSimulator, client: httpx.Client, service: str, overrides: dict[str, Any], field: str
) -> None:
    answer = client.post(f"/{service}/videos", json=service_body(service, **overrides))
    body = assert_error(answer, 400, "bad_request")
    assert field in body["error"]["message"]
    assert sim.jobs() == []


@pytest.mark.parametrize(
    ("service", "overrides"),
    [
        ("sora", {"version": 2}),  # the integer older clients sent
        ("sora", {"model": "sora-2-pro", "size": "1792x1024", "duration": 12, "image_urls": [IMAGE_URL]}),
        (
            "veo",
            {
                "action": "image2video",
                "image_urls": [IMAGE_URL],
                "aspect_ratio": "9:16",
                "resolution": "1080p",
            },
        ),
        ("veo", {"model": "veo31", "resolution": "4k"}),
        ("kling", {"model": "kling-v3", "duration": 15, "mode": "4k", "generate_audio": True}),
        ("seedance", {"duration": -1, "ratio": "21:9", "resolution": "1080p", "generate_audio": True}),
        ("seedance", {"model": "doubao-seedance-2-0-260128", "duration": 15}),
        (
            "seedance",
            {
                "model": "doubao-seedance-1-0-lite-i2v-250428",
                "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}, "role": "first_frame"}],
            },
        ),
        (
            "wan",
            {
                "action": "image2video",
                "model": "wan2.6-i2v-flash",
                "image_url": IMAGE_URL,
                "resolution": "1080P",
            },
        ),
        (
            "wan",
            {"size": "960*960", "duration": 15, "audio": True, "shot_type": "multi", "prompt_extend": True},
        ),
    ],
)
def test_documented_service_options_are_accepted(
    client: httpx.Client, service: str, overrides: dict[str, Any]
) -> None:
    answer = client.post(f"/{service}/videos", json=service_body(service, **overrides))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("service", "overrides", "shape"),
    [
        # (width, height, seconds) of the video the service would deliver for that request
        ("sora", {"size": "1280x720", "duration": 8}, (1280, 720, 8)),
        ("sora", {}, (720, 1280, 4)),  # the defaults
        ("veo", {"aspect_ratio": "9:16"}, (720, 1280, 8)),
        ("kling", {"aspect_ratio": "1:1"}, (720, 720, 5)),
        ("seedance", {"resolution": "480p", "ratio": "4:3", "duration": 4}, (640, 480, 4)),
        ("wan", {"size": "832*480"}, (832, 480, 5)),
    ],
)
def test_the_served_video_has_the_frame_and_length_the_service_would_deliver(
    web: httpx.Client,
    sim: ProviderSimulator,
    client: httpx.Client,
    service: str,
    overrides: dict,
    shape: tuple,
) -> None:
    task_id = client.post(f"/{service}/videos", json=service_body(service, **overrides)).json()["task_id"]
    finished_response(client, service, task_id)
    info = probe(web.get(f"{sim.url}/files/{task_id}.mp4").content)
    assert (info["width"], info["height"], info["seconds"]) == (shape[0], shape[1], pytest.approx(shape[2]))


def test_a_service_lookup_knows_only_that_services_tasks(client: httpx.Client) -> None:
    veo = client.post("/veo/videos", json=service_body("veo")).json()["task_id"]
    kling = client.post("/kling/videos", json=service_body("kling")).json()["task_id"]
    for service, own in (("veo", veo), ("kling", kling)):
        batch = client.post(
            f"/{service}/tasks", json={"action": "retrieve_batch", "ids": [veo, kling]}
        ).json()
        assert [item["id"] for item in batch["items"]] == [own]


def test_a_service_callback_is_its_result_body(client: httpx.Client, receiver: CallbackReceiver) -> None:
    body = service_body("kling", callback_url=receiver.url)
    task_id = client.post("/kling/videos", json=body).json()["task_id"]
    (delivery,) = receiver.wait_for(1)
    assert delivery.body == retrieve(client, task_id, "kling")["response"]
    assert delivery.body["state"] == "succeed"


@pytest.mark.parametrize("service", ["sora", "wan"])
def test_a_failed_service_task_has_the_platform_failure_body(client: httpx.Client, service: str) -> None:
    body = service_body(service, prompt="[sim:fail] no")
    task_id = client.post(f"/{service}/videos", json=body).json()["task_id"]
    response = finished_response(client, service, task_id)
    assert (response["success"], response["error"]["code"]) == (False, "api_error")


@pytest.mark.parametrize("service", ["sora", "wan"])
def test_a_service_takes_the_create_fault_markers(client: httpx.Client, service: str) -> None:
    answer = client.post(f"/{service}/videos", json=service_body(service, prompt="[sim:429x1] busy"))
    assert_error(answer, 429, "too_many_requests")
    assert answer.headers["Retry-After"] == "1"
    assert (
        client.post(f"/{service}/videos", json=service_body(service, prompt="[sim:429x1] busy")).status_code
        == 200
    )
