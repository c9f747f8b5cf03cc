"""A faithful local simulator of the AceDataCloud Sora API (see shared/providers/acedata-sora.md).

The real routes answer 404 since the Sora shutdown, so every test and the local stack talk to this
instead. It speaks the documented wire format (routes, bodies, error shapes, callbacks), serves a
real MP4 per task, and injects the failures the relay must survive: failed generations, lost,
duplicated and late callbacks, missing videos, and 429/5xx on create.

Run it alone with `python -m devstack.simulator --port 8701 --token TOKEN`; embed it in tests with
`with ProviderSimulator(SimulatorConfig(api_token=...)) as sim: ...`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from devstack.mp4 import render_mp4

__all__ = [
    "FAULTS",
    "FaultMode",
    "ProviderSimulator",
    "SimulatorConfig",
    "main",
]

logger = logging.getLogger("devstack.simulator")

MODELS = frozenset({"sora-2", "sora-2-pro"})
DURATIONS = frozenset({4, 8, 12})
DEFAULT_SIZE = "720x1280"
SIZES = frozenset({"720x1280", "1280x720", "1024x1792", "1792x1024"})
PRO_ONLY_SIZES = frozenset({"1024x1792", "1792x1024"})
MAX_BATCH_IDS = 50
MAX_BODY_BYTES = 1 << 20
CALLBACK_TIMEOUT_S = 10.0
FAILURE_MESSAGE = "simulated generation failure"

# A prompt selects a fault with e.g. "[sim:fail]" or "[sim:429x2]".
_MARKER = re.compile(r"\[sim:([A-Za-z0-9-]+)\]")
# "429x2": the create-time fault "429", applied to the first 2 attempts of the same prompt only.
_COUNTED = re.compile(r"^(?P<base>.+)x(?P<times>[1-9][0-9]*)$")
_FILE_ROUTE = re.compile(r"^/files/(?P<task_id>[A-Za-z0-9-]+)\.mp4$")
_SIM_TASK_ROUTE = re.compile(r"^/_sim/tasks/(?P<task_id>[A-Za-z0-9-]+)$")
_ULID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class FaultMode:
    """What one fault mode changes about a task; the default instance is a clean run."""

    # Refuse the create call with this HTTP status and error code instead of accepting it.
    create_status: int | None = None
    create_code: str | None = None
    # Finish the task with the platform failure body instead of a video.
    fail: bool = False
    # How many times the (identical) callback is POSTed: 0 = lost, 2 = duplicated.
    callbacks: int = 1
    # Send the callback after late_delay_s; the task itself still finishes on time.
    late_callback: bool = False
    # The task succeeds but its video_url answers 404.
    video_missing: bool = False
    # The first N downloads of the video answer 503 (a CDN hiccup the archive step retries).
    video_unavailable: int = 0


# The fault table: add a mode here and it works from prompt markers, config, set_fault and the
# control route alike. Create-time modes also accept an "xN" suffix (see _COUNTED).
FAULTS: dict[str, FaultMode] = {
    "none": FaultMode(),
    "fail": FaultMode(fail=True),
    "no-callback": FaultMode(callbacks=0),
    "double-callback": FaultMode(callbacks=2),
    "late-callback": FaultMode(late_callback=True),
    "video-404": FaultMode(video_missing=True),
    "video-503": FaultMode(video_unavailable=2),
    "429": FaultMode(create_status=429, create_code="too_many_requests"),
    "500": FaultMode(create_status=500, create_code="api_error"),
    "504": FaultMode(create_status=504, create_code="timeout"),
}


def resolve_fault(mode: str) -> tuple[FaultMode, int | None]:
    """Look up a mode name; return the mode and, for "429x2"-style names, the attempt limit."""
    if mode in FAULTS:
        return FAULTS[mode], None
    counted = _COUNTED.match(mode)
    if counted and counted["base"] in FAULTS and FAULTS[counted["base"]].create_status is not None:
        return FAULTS[counted["base"]], int(counted["times"])
    known = ", ".join(sorted(FAULTS))
    raise ValueError(f"unknown simulator fault {mode!r}; known: {known} (create faults also take xN)")


@dataclass
class SimulatorConfig:
    """How the simulator behaves; the defaults suit the local stack, tests shorten the delays."""

    api_token: str
    callback_delay_s: float = 1.0
    late_delay_s: float = 6.0
    render_fps: int = 4
    fault: str | None = None  # default fault mode for every task without a prompt marker
    host: str = "127.0.0.1"
    port: int = 0  # 0 = let the OS pick a free port
    video_dir: Path | None = None  # a temp dir (removed on stop) if None
    # Base of the video_url handed out; set it when the consumer reaches the simulator under
    # another name (e.g. http://host.docker.internal:8701 from sam local containers).
    public_url: str | None = None


class ApiError(Exception):
    """An error answer in the provider's documented shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self, trace_id: str | None = None) -> dict[str, Any]:
        return {
            "success": False,
            **self.extra,
            "error": {"code": self.code, "message": self.message},
            "trace_id": trace_id or str(uuid.uuid4()),
        }


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


@dataclass
class _Task:
    """The simulator's state for one task: the public record plus what tests inspect."""

    record: dict[str, Any]
    fault_name: str
    fault: FaultMode
    video_id: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    downloads: int = 0

    @property
    def task_id(self) -> str:
        return str(self.record["id"])


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~40 ms; share it so starting a simulator per test stays cheap.
    return ssl.create_default_context()


def _video_id(model: str) -> str:
    # Shaped like the samples ("sora-2:task_01k777hjrbfrgs2060q5zvf2a5").
    suffix = "".join(secrets.choice(_ULID_ALPHABET) for _ in range(26))
    return f"{model}:task_{suffix}"


def validate_create(body: Any) -> dict[str, Any]:
    """Check a create body the way the v2 API does; return the normalised parameters."""
    if not isinstance(body, dict):
        raise _bad_request("request body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad_request("prompt is required and must be a non-empty string")
    model = body.get("model")
    if model not in MODELS:
        raise _bad_request(f"model must be one of {sorted(MODELS)}, got {model!r}")
    version = body.get("version")
    # "2.0" is the documented value; older clients sent the integer 2. bool is an int subclass.
    if not (version == "2.0" or (type(version) is int and version == 2)):
        raise _bad_request(f'version must be "2.0" (only the v2 mode is simulated), got {version!r}')
    duration = body.get("duration", 4)
    if type(duration) is not int or duration not in DURATIONS:
        raise _bad_request(f"duration must be one of {sorted(DURATIONS)}, got {duration!r}")
    size = body.get("size", DEFAULT_SIZE)
    if size not in SIZES:
        raise _bad_request(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if size in PRO_ONLY_SIZES and model != "sora-2-pro":
        raise _bad_request(f"size {size} requires model sora-2-pro")
    image_urls = body.get("image_urls")
    if image_urls is not None and (
        not isinstance(image_urls, list) or not all(isinstance(url, str) for url in image_urls)
    ):
        raise _bad_request("image_urls must be a list of strings")
    callback_url = body.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise _bad_request("callback_url must be an http(s) URL string")
    async_flag = body.get("async", False)
    if not isinstance(async_flag, bool):
        raise _bad_request("async must be a boolean")
    width, height = (int(part) for part in size.split("x"))
    return {
        "prompt": prompt,
        "model": model,
        "duration": duration,
        "width": width,
        "height": height,
        "callback_url": callback_url,
        "async": async_flag,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never keep the process alive
    simulator: ProviderSimulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "sora-relay-simulator/1"

    # Routes: (method, exact path) -> handler name; pattern routes are matched in _route.
    ROUTES: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/healthz"): "handle_healthz",
        ("POST", "/sora/videos"): "handle_create",
        ("POST", "/sora/tasks"): "handle_tasks",
        ("POST", "/_sim/fault"): "handle_set_fault",
    }

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def sim(self) -> ProviderSimulator:
        return self.server.simulator

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            name = self.ROUTES.get((method, path))
            if name is not None:
                getattr(self, name)()
                return
            if method in ("GET", "HEAD") and (match := _FILE_ROUTE.match(path)):
                self.handle_file(match["task_id"], head=method == "HEAD")
                return
            if method == "GET" and (match := _SIM_TASK_ROUTE.match(path)):
                self.handle_sim_task(match["task_id"])
                return
            raise ApiError(404, "no_api", f"no API for {method} {path}")
        except ApiError as error:
            self._send_json(error.status, error.body(), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away during %s %s", method, path)
        except Exception:  # a simulator bug must answer like the provider does, not hang
            logger.exception("simulator error on %s %s", method, path)
            self._send_json(500, ApiError(500, "api_error", "simulator internal error").body())

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_json(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _bad_request("invalid Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise _bad_request("request body too large")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _bad_request("request body must be valid JSON") from None

    def _authorize(self) -> None:
        header = (self.headers.get("Authorization") or "").strip()
        if not header or header.lower() == "bearer":
            raise ApiError(400, "no_token", "no token provided in the Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), self.sim.config.api_token.encode()
        ):
            raise ApiError(401, "invalid_token", "the token is invalid")

    # -- provider routes -----------------------------------------------------------------------

    def handle_healthz(self) -> None:
        self._send_json(200, {"status": "ok"})

    def handle_create(self) -> None:
        self._authorize()
        body = self._read_json()
        status, answer, headers = self.sim.create(body)
        self._send_json(status, answer, headers)

    def handle_tasks(self) -> None:
        self._authorize()
        body = self._read_json()
        if not isinstance(body, dict):
            raise _bad_request("request body must be a JSON object")
        action = body.get("action")
        if action == "retrieve":
            task_id = body.get("id")
            if not isinstance(task_id, str) or not task_id:
                raise _bad_request("id is required for action retrieve")
            record = self.sim.record(task_id)
            if record is None:
                # Undocumented upstream; a 404 lets clients tell "unknown" from "still running".
                raise ApiError(404, "not_found", f"task {task_id} not found")
            self._send_json(200, record)
        elif action == "retrieve_batch":
            ids = body.get("ids")
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise _bad_request("ids must be a list of task id strings for action retrieve_batch")
            if len(ids) > MAX_BATCH_IDS:
                raise _bad_request(f"ids accepts at most {MAX_BATCH_IDS} task ids, got {len(ids)}")
            # Unknown ids are left out, so count can be smaller than len(ids).
            items = [record for task_id in ids if (record := self.sim.record(task_id)) is not None]
            self._send_json(200, {"items": items, "count": len(items)})
        else:
            raise _bad_request(f"action must be retrieve or retrieve_batch, got {action!r}")

    def handle_file(self, task_id: str, *, head: bool) -> None:
        path = self.sim.video_path(task_id)
        if path is None:
            raise ApiError(404, "not_found", f"no video for {task_id}")
        if not head and self.sim.count_download(task_id):
            raise ApiError(503, "service_unavailable", "the video is not available right now")
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        with path.open("rb") as video:
            shutil.copyfileobj(video, self.wfile, 64 * 1024)

    # -- test-only control routes --------------------------------------------------------------

    def handle_sim_task(self, task_id: str) -> None:
        state = self.sim.task_state(task_id)
        if state is None:
            raise ApiError(404, "not_found", f"task {task_id} not found")
        self._send_json(200, state)

    def handle_set_fault(self) -> None:
        body = self._read_json()
        if not isinstance(body, dict) or "mode" not in body:
            raise _bad_request('body must be {"mode": <fault mode or null>}')
        mode = body["mode"]
        if mode is not None and not isinstance(mode, str):
            raise _bad_request("mode must be a string or null")
        try:
            self.sim.set_fault(mode)
        except ValueError as error:
            raise _bad_request(str(error)) from None
        self._send_json(200, {"mode": mode})


class ProviderSimulator:
    """The simulated provider: an HTTP server in a daemon thread plus timers for task completion."""

    def __init__(self, config: SimulatorConfig) -> None:
        if config.fault is not None:
            resolve_fault(config.fault)  # fail fast on a typo
        self.config = config
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._create_attempts: dict[tuple[str, str], int] = {}
        self._fault: str | None = config.fault
        self._timers: list[threading.Timer] = []
        # Wall seconds of each MP4 render (on a task's first download), for measuring.
        self.render_seconds: deque[float] = deque(maxlen=100_000)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._owns_video_dir = config.video_dir is None
        self._video_dir: Path | None = config.video_dir

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ProviderSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        if self._video_dir is None:
            self._video_dir = Path(tempfile.mkdtemp(prefix="sora-sim-"))
        self._video_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._http = httpx.Client(timeout=CALLBACK_TIMEOUT_S, verify=_tls_context())
        server = _Server((self.config.host, self.config.port), _Handler)
        server.simulator = self
        self._server = server
        # A short poll interval keeps stop() fast: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="sora-simulator", daemon=True
        )
        self._thread.start()
        logger.info("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, cancel pending completions and callbacks, wait for running ones."""
        self._stopping.set()  # also wakes synchronous-mode requests blocked in their delay
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for timer in timers:
            timer.join(timeout=CALLBACK_TIMEOUT_S + 1)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._http is not None:
            self._http.close()
        self._server = self._thread = self._http = None
        if self._owns_video_dir and self._video_dir is not None:
            shutil.rmtree(self._video_dir, ignore_errors=True)
            self._video_dir = None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        # A wildcard bind is still reached through loopback.
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        return (self.config.public_url or self.url).rstrip("/")

    @property
    def video_dir(self) -> Path:
        if self._video_dir is None:
            raise RuntimeError("simulator not started")
        return self._video_dir

    # -- introspection and control -------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """A consistent deep copy of every task record, keyed by task id."""
        with self._lock:
            return {task_id: copy.deepcopy(task.record) for task_id, task in self._tasks.items()}

    def record(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return copy.deepcopy(task.record) if task else None

    def task_state(self, task_id: str) -> dict[str, Any] | None:
        """The record, its fault mode and every callback attempt (what /_sim/tasks/{id} shows)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            return copy.deepcopy(
                {"record": task.record, "fault": task.fault_name, "callbacks": task.callbacks}
            )

    @property
    def fault(self) -> str | None:
        return self._fault

    def set_fault(self, mode: str | None) -> None:
        """Set the default fault for tasks created from now on (None = behave normally)."""
        if mode is not None:
            resolve_fault(mode)
        with self._lock:
            self._fault = mode

    # -- the provider's behaviour --------------------------------------------------------------

    def create(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Handle POST /sora/videos; return (status, body, extra headers)."""
        params = validate_create(body)
        prompt: str = params["prompt"]
        marker = _MARKER.search(prompt)
        with self._lock:
            fault_name = marker.group(1) if marker else (self._fault or "none")
        try:
            fault, limit = resolve_fault(fault_name)
        except ValueError as error:
            raise _bad_request(f"prompt: {error}") from None

        if fault.create_status is not None:
            with self._lock:
                key = (fault_name, prompt)
                attempt = self._create_attempts.get(key, 0) + 1
                self._create_attempts[key] = attempt
            if limit is None or attempt <= limit:
                headers = {"Retry-After": "1"} if fault.create_status == 429 else None
                raise ApiError(
                    fault.create_status,
                    str(fault.create_code),
                    f"simulated {fault.create_status} on create (attempt {attempt})",
                    headers,
                )

        now = time.time()
        task = _Task(
            record={
                "id": str(uuid.uuid4()),
                "created_at": now,
                "started_at": now,
                "trace_id": str(uuid.uuid4()),
                "type": "videos",
                "request": copy.deepcopy(body),
            },
            fault_name=fault_name,
            fault=fault,
            video_id=_video_id(params["model"]),
        )
        with self._lock:
            self._tasks[task.task_id] = task

        delay = self.config.callback_delay_s
        callback_url: str | None = params["callback_url"]
        if callback_url is None and not params["async"]:
            # Synchronous mode: the provider holds the request until the video is ready.
            self._stopping.wait(delay)
            result = self._finish(task)
            return (200 if result["success"] else 500), result, {}

        if callback_url is None:
            self._schedule(delay, lambda: self._finish(task))
            return 200, {"task_id": task.task_id}, {}  # the documented minimal answer
        if fault.late_callback:
            self._schedule(delay, lambda: self._finish(task))
            self._schedule(self.config.late_delay_s, lambda: self._deliver(task, callback_url))
        else:
            self._schedule(delay, lambda: self._deliver(task, callback_url, self._finish(task)))
        return 200, {"success": True, "task_id": task.task_id}, {}

    def _schedule(self, delay: float, action: Callable[[], object]) -> None:
        def run() -> None:
            if self._stopping.is_set():
                return
            try:
                action()
            except Exception:  # a timer thread has nobody to report to but the log
                logger.exception("simulator background action failed")

        timer = threading.Timer(delay, run)
        timer.daemon = True
        with self._lock:
            if self._stopping.is_set():
                return
            self._timers = [pending for pending in self._timers if pending.is_alive()]
            self._timers.append(timer)
            timer.start()  # under the lock, so stop() never joins a timer that was not started

    def _finish(self, task: _Task) -> dict[str, Any]:
        """Complete the task at the provider (queryable from now on); return its response body."""
        with self._lock:
            if "response" in task.record:  # finishing twice must not change the outcome
                return copy.deepcopy(task.record["response"])
            record = task.record
            response: dict[str, Any]
            if task.fault.fail:
                response = {
                    "success": False,
                    "task_id": record["id"],
                    "trace_id": record["trace_id"],
                    "error": {"code": "api_error", "message": FAILURE_MESSAGE},
                }
            else:
                response = {
                    "success": True,
                    "task_id": record["id"],
                    "trace_id": record["trace_id"],
                    "data": [
                        {
                            "id": task.video_id,
                            "video_url": f"{self.public_url}/files/{record['id']}.mp4",
                            "state": "succeeded",
                        }
                    ],
                }
            record["response"] = response
            record["finished_at"] = time.time()
            return copy.deepcopy(response)

    def _deliver(self, task: _Task, url: str, body: dict[str, Any] | None = None) -> None:
        """POST the task's result to its callback_url as often as its fault mode says."""
        if body is None:
            body = self._finish(task)
        # A provider calls back once the video is ready: render it now, in this timer thread, not
        # while the callback's download holds a CallbackFunction instance (bench/throughput.py).
        self.video_path(task.task_id)
        for _ in range(task.fault.callbacks):
            if self._stopping.is_set():
                return
            attempt: dict[str, Any] = {"at": time.time(), "url": url, "status": None, "error": None}
            try:
                assert self._http is not None
                answer = self._http.post(url, json=body)
                attempt["status"] = answer.status_code
            except httpx.HTTPError as error:
                attempt["error"] = f"{type(error).__name__}: {error}"
            with self._lock:
                task.callbacks.append(attempt)

    def count_download(self, task_id: str) -> bool:
        """Count a download of the task's video; True when its fault makes this one answer 503."""
        with self._lock:
            task = self._tasks[task_id]
            task.downloads += 1
            return task.downloads <= task.fault.video_unavailable

    def video_path(self, task_id: str) -> Path | None:
        """The task's MP4 on disk, rendered on first request; None when there is no video."""
        with self._lock:
            task = self._tasks.get(task_id)
            response = task.record.get("response") if task else None
        if task is None or not response or response.get("success") is not True:
            return None
        if task.fault.video_missing:
            return None
        path = self.video_dir / f"{task_id}.mp4"
        with task.render_lock:  # concurrent first downloads render once
            if not path.exists():
                params = validate_create(task.record["request"])
                partial = path.with_suffix(".part")
                started = time.monotonic()
                render_mp4(
                    partial,
                    width=params["width"],
                    height=params["height"],
                    seconds=params["duration"],
                    seed=task_id,
                    fps=self.config.render_fps,
                )
                partial.replace(path)  # atomic, so a reader never sees half a file
                self.render_seconds.append(time.monotonic() - started)
        return path


def main(argv: list[str] | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="AceDataCloud Sora API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--token", required=True, help="the Bearer token clients must send")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds until a task finishes")
    parser.add_argument("--late-delay", type=float, default=6.0, help="seconds for late-callback")
    parser.add_argument("--fps", type=int, default=4)
    parser.add_argument("--fault", default=None, help=f"default fault mode: {', '.join(FAULTS)}")
    parser.add_argument("--video-dir", type=Path, default=None)
    parser.add_argument("--public-url", default=None, help="base URL used in video_url")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = SimulatorConfig(
        api_token=args.token,
        callback_delay_s=args.delay,
        late_delay_s=args.late_delay,
        render_fps=args.fps,
        fault=args.fault,
        host=args.host,
        port=args.port,
        video_dir=args.video_dir,
        public_url=args.public_url,
    )
    try:
        simulator = ProviderSimulator(config)
    except ValueError as error:
        parser.error(str(error))
    with simulator:
        print(f"Sora simulator listening on {simulator.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
