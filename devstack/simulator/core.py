"""The engine: the HTTP server, jobs and their lifecycle, faults, MP4s, the push log; each family is a
dialect under its own prefix (the rules all keep: shared/providers/README.md, "Rules for every adapter")."""

from __future__ import annotations

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx

from devstack.mp4 import render_mp4
from devstack.processes import QuietHTTPServer, local_http

logger = logging.getLogger("devstack.simulator")

MAX_BODY_BYTES = 1 << 20
CALLBACK_TIMEOUT_S = 10.0
FAILURE_MESSAGE = "simulated generation failure"
STALE_BY_S = 600  # stale-push signs 10 minutes in the past (fal's and Replicate's windows are 5)

_MARKER = re.compile(r"\[sim:([A-Za-z0-9-]+)\]")  # a prompt picks a fault: "[sim:fail]", "[sim:429x2]"
_COUNTED = re.compile(r"^(?P<base>.+)x(?P<times>[1-9][0-9]*)$")  # "429x2": only the first 2 attempts
_FILE_ROUTE = re.compile(r"^/files/(?P<job_id>[A-Za-z0-9_-]+)\.mp4$")
_SIM_TASK_ROUTE = re.compile(r"^/_sim/tasks/(?P<job_id>[A-Za-z0-9_.:-]+)$")


@dataclass(frozen=True)
class FaultMode:
    """What one fault mode changes about a job; the default instance is a clean run."""

    create_status: int | None = None  # refuse the create with this status and error code
    create_code: str | None = None
    fail: bool = False  # finish with the provider's failure instead of a video
    callbacks: int = 1  # how often the final push is sent: 0 = lost, 2 = duplicated
    late_callback: bool = False  # the final push comes after late_delay_s; the job finishes on time
    video_missing: bool = False  # the job succeeds but its video URL answers 404
    video_unavailable: int = 0  # the first N downloads answer 503
    progress_pushes: int = 0  # intermediate pushes (not terminal) before the final one
    forged_push: bool = False  # first a push whose signature is wrong (or, unsigned, whose token is)
    stale_push: bool = False  # first a push signed with a timestamp STALE_BY_S old
    url_ttl_s: float | None = None  # the video URL stops working this long after the job finished


# The failures the relay must survive (shared/providers/README.md, "Rules for every adapter").
FAULTS: dict[str, FaultMode] = {
    "none": FaultMode(),
    "fail": FaultMode(fail=True),
    "no-callback": FaultMode(callbacks=0),
    "double-callback": FaultMode(callbacks=2),
    "late-callback": FaultMode(late_callback=True),
    "video-404": FaultMode(video_missing=True),
    "video-503": FaultMode(video_unavailable=2),
    "progress": FaultMode(progress_pushes=2),
    "forged-push": FaultMode(forged_push=True),
    "stale-push": FaultMode(stale_push=True),
    # The link lapses as the job finishes and the push comes late: any copy is too late.
    "expired-url": FaultMode(url_ttl_s=0.0, late_callback=True),
    "429": FaultMode(create_status=429, create_code="too_many_requests"),
    "500": FaultMode(create_status=500, create_code="api_error"),
    "504": FaultMode(create_status=504, create_code="timeout"),
}


def resolve_fault(mode: str) -> tuple[FaultMode, int | None]:
    """A mode by name, with the attempt limit of a "429x2"-style name (else None)."""
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

    api_token: str  # AceData's Bearer token; fal's and Replicate's default to it
    callback_delay_s: float = 1.0
    late_delay_s: float = 6.0
    render_fps: int = 4
    fault: str | None = None  # default fault mode for every job without a prompt marker
    host: str = "127.0.0.1"
    port: int = 0  # 0 = let the OS pick a free port
    video_dir: Path | None = None  # a temp dir (removed on stop) if None
    public_url: str | None = None  # base of the video URLs, when consumers use another host name
    fal_key: str | None = None
    fal_user_id: str = "sim-fal-user"
    replicate_token: str | None = None


class SimError(Exception):
    """An error answer; each dialect writes it in its provider's shape (Dialect.error_body)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad_request(message: str) -> SimError:
    return SimError(400, "bad_request", message)


@dataclass
class Request:
    method: str
    path: str  # without the dialect's prefix or the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    groups: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad_request("request body must be valid JSON") from None


Answer = tuple[int, Any, dict[str, str]]  # status, JSON body, extra headers
Route = tuple[str, re.Pattern[str], Callable[[Request], Answer]]
Shape = tuple[str, int, int, int]  # prompt, width, height, seconds of the video a job renders
Push = Callable[["Job", str], None]  # push(job, kind): kind is progress | forged | stale | final
Outcome = Callable[["Job"], None]  # writes a job's record as it begins or finishes (under the lock)


class Dialect(Protocol):
    name: str
    prefix: str  # "" or e.g. "/fal": the local stack's base URL for the provider ends with it

    def routes(self) -> list[Route]: ...

    def error_body(self, error: SimError) -> Any: ...


@dataclass
class Job:
    """One generation: the dialect's public record plus what tests read."""

    id: str
    dialect: str
    prompt: str
    width: int
    height: int
    seconds: int
    fault_name: str
    fault: FaultMode
    record: dict[str, Any]  # the dialect's public view (request, status, output ...)
    meta: dict[str, Any] = field(default_factory=dict)  # the dialect's private notes
    state: str = "queued"  # queued | running | succeeded | failed
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    downloads: int = 0
    render_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed")


def check_bearer(
    request: Request, token: str, scheme: str = "Bearer", refused: SimError | None = None
) -> None:
    """The Authorization header must be `<scheme> <token>`; else `refused` (default: a 401)."""
    given_scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    matches = secrets.compare_digest(given.strip().encode(), token.encode())
    if given_scheme.lower() != scheme.lower() or not matches:
        raise refused or SimError(401, "invalid_token", "the token is invalid")


def refuse(when: object, message: str) -> None:
    """A 400 naming the field when a rule across fields is broken."""
    if when:
        raise bad_request(message)


def json_object(request: Request, refused: SimError | None = None) -> dict[str, Any]:
    """The request's JSON body, which must be an object; else `refused` (default: a 400)."""
    body = request.json()
    if not isinstance(body, dict):
        raise refused or bad_request("request body must be a JSON object")
    return body


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # ~40 ms to load: shared, so a simulator per test stays cheap


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
    _send(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})


class ProviderSimulator:
    """The server and its jobs. Start it with `start()` or as a context manager."""

    def __init__(self, config: SimulatorConfig) -> None:
        from devstack.simulator.acedata import AceData
        from devstack.simulator.fal import Fal
        from devstack.simulator.replicate import Replicate

        if config.fault is not None:
            resolve_fault(config.fault)  # fail fast on a typo
        self.config = config
        self.lock = threading.Lock()  # guards every job's state; a dialect takes it to change a record
        self._jobs: dict[str, Job] = {}
        self._create_attempts: dict[tuple[str, str], int] = {}
        self.fault: str | None = config.fault  # the default fault mode; set it with set_fault
        self._timers: list[threading.Timer] = []
        self.render_seconds: deque[float] = deque(maxlen=100_000)  # wall seconds per MP4 render
        self._stopping = threading.Event()
        self._server: QuietHTTPServer | None = None
        self._http: httpx.Client | None = None
        self._owns_video_dir = config.video_dir is None
        self._video_dir: Path | None = config.video_dir
        # Longest prefix first, so "/fal" wins over the root dialect (AceData, last).
        self.dialects: list[Dialect] = [Fal(self), Replicate(self), AceData(self)]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ProviderSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._video_dir = self._video_dir or Path(tempfile.mkdtemp(prefix="sora-sim-"))
        self._video_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._http = local_http(timeout=CALLBACK_TIMEOUT_S, verify=_tls_context())
        self._server = QuietHTTPServer(self, self.config.port, host=self.config.host)
        self._server.start_background("sora-simulator")
        logger.info("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, cancel pending completions and pushes, wait for running ones."""
        self._stopping.set()
        with self.lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for timer in timers:
            timer.join(timeout=CALLBACK_TIMEOUT_S + 1)
        if self._server is not None:
            self._server.stop_background()
        if self._http is not None:
            self._http.close()
        self._server = self._http = None
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
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        return (self.config.public_url or self.url).rstrip("/")

    def base_url(self, dialect: str) -> str:
        """Where the relay reaches a dialect (its provider's base URL in the local stack)."""
        return self.url + next(item.prefix for item in self.dialects if item.name == dialect)

    @property
    def video_dir(self) -> Path:
        if self._video_dir is None:
            raise RuntimeError("simulator not started")
        return self._video_dir

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when the simulator stops; True if it is stopping."""
        return self._stopping.wait(seconds)

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Route one request (QuietHTTPServer calls this): health, files, /_sim/*, then dialects."""
        path, _, query = handler.path.partition("?")
        method = handler.command
        dialect = self.dialects[-1]  # the root dialect's shape until a prefix picks another
        try:
            if path == "/healthz":
                return _send_json(handler, 200, {"status": "ok"}, {})
            if method in ("GET", "HEAD") and (match := _FILE_ROUTE.match(path)):
                return self._send_file(handler, match["job_id"])
            headers = {name.lower(): value for name, value in handler.headers.items()}
            query_args = dict(parse_qsl(query, keep_blank_values=True))
            request = Request(method, path, query_args, headers, _read_body(handler))
            if path.startswith("/_sim/"):
                return _send_json(handler, *self.control(request))
            dialect = next(d for d in self.dialects if path == d.prefix or path.startswith(d.prefix + "/"))
            request.path = path[len(dialect.prefix) :] or "/"
            for route_method, pattern, answer in dialect.routes():
                if route_method == method and (found := pattern.fullmatch(request.path)):
                    request.groups = found.groupdict()
                    return _send_json(handler, *answer(request))
            raise SimError(404, "no_api", f"no API for {method} {path}")
        except SimError as error:
            _send_json(handler, error.status, dialect.error_body(error), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away during %s %s", method, path)
        except Exception:  # a simulator bug must answer like a provider does, not hang
            logger.exception("simulator error on %s %s", method, path)
            _send_json(handler, 500, dialect.error_body(SimError(500, "api_error", "simulator error")), {})

    def _send_file(self, handler: BaseHTTPRequestHandler, job_id: str) -> None:
        job = self.job(job_id)
        ttl = job.fault.url_ttl_s if job is not None else None
        if job and ttl is not None and job.finished_at is not None and time.time() > job.finished_at + ttl:
            raise SimError(403, "expired", "the signed URL has expired")
        if (path := self.video_path(job_id)) is None or job is None:
            raise SimError(404, "not_found", f"no video for {job_id}")
        if handler.command != "HEAD":
            with self.lock:
                job.downloads += 1
            if job.downloads <= job.fault.video_unavailable:  # the video-503 fault's first downloads
                raise SimError(503, "service_unavailable", "the video is not available right now")
        _send(handler, 200, path.read_bytes(), {"Content-Type": "video/mp4"})  # small clips

    # -- introspection and control -------------------------------------------------------------

    def job(self, job_id: str, dialect: str | None = None) -> Job | None:
        """A job by id; with `dialect`, only one of that dialect's (another's id is unknown there)."""
        with self.lock:
            job = self._jobs.get(job_id)
        return job if job is not None and dialect in (None, job.dialect) else None

    def jobs(self, dialect: str | None = None) -> list[Job]:
        with self.lock:
            return [job for job in self._jobs.values() if dialect is None or job.dialect == dialect]

    def record(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            job = self._jobs.get(job_id)
            return copy.deepcopy(job.record) if job else None

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """A consistent deep copy of every job's record, keyed by job id."""
        with self.lock:
            return {job_id: copy.deepcopy(job.record) for job_id, job in self._jobs.items()}

    def task_state(self, job_id: str) -> dict[str, Any] | None:
        """The record, its fault mode and every push attempt (what /_sim/tasks/{id} shows)."""
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            state = {"record": job.record, "dialect": job.dialect, "state": job.state}
            return copy.deepcopy({**state, "fault": job.fault_name, "callbacks": job.callbacks})

    def create_attempts(self, fault: str, prompt: str) -> int:
        """How many creates came for a create-time fault and prompt (the relay must not resend)."""
        with self.lock:
            return self._create_attempts.get((fault, prompt), 0)

    def set_fault(self, mode: str | None) -> None:
        """Set the default fault for jobs created from now on (None = behave normally)."""
        if mode is not None:
            resolve_fault(mode)
        with self.lock:
            self.fault = mode

    def control(self, request: Request) -> Answer:
        """The test-only routes: POST /_sim/fault, GET /_sim/tasks/{id}."""
        if request.method == "POST" and request.path == "/_sim/fault":
            body = request.json()
            if not isinstance(body, dict) or "mode" not in body:
                raise bad_request('body must be {"mode": <fault mode or null>}')
            if body["mode"] is not None and not isinstance(body["mode"], str):
                raise bad_request("mode must be a string or null")
            try:
                self.set_fault(body["mode"])
            except ValueError as error:
                raise bad_request(str(error)) from None
            return 200, {"mode": body["mode"]}, {}
        if request.method == "GET" and (match := _SIM_TASK_ROUTE.match(request.path)):
            state = self.task_state(match["job_id"])
            if state is None:
                raise SimError(404, "not_found", f"task {match['job_id']} not found")
            return 200, state, {}
        raise SimError(404, "no_api", f"no control route {request.method} {request.path}")

    # -- the job lifecycle the dialects share ----------------------------------------------------

    def new_job(self, dialect: str, shape: Shape, record: dict[str, Any], job_id: str) -> Job:
        """Register a job, or raise the create-time fault its prompt (or the default) asks for."""
        prompt = shape[0]
        marker = _MARKER.search(prompt)
        with self.lock:
            fault_name = marker.group(1) if marker else (self.fault or "none")
        try:
            fault, limit = resolve_fault(fault_name)
        except ValueError as error:
            raise bad_request(f"prompt: {error}") from None
        if fault.create_status is not None:
            with self.lock:
                key = (fault_name, prompt)
                attempt = self._create_attempts[key] = self._create_attempts.get(key, 0) + 1
            if limit is None or attempt <= limit:
                message = f"simulated {fault.create_status} on create (attempt {attempt})"
                headers = {"Retry-After": "1"} if fault.create_status == 429 else None
                raise SimError(fault.create_status, str(fault.create_code), message, headers)
        job = Job(job_id, dialect, *shape, fault_name, fault, record)
        with self.lock:
            self._jobs[job.id] = job
        return job

    def run(self, job: Job, finish: Outcome, push: Push | None = None, begin: Outcome | None = None) -> None:
        """Running at delay/4 (`begin`), done at the delay (`finish`); pushes halfway, then "final"."""
        delay, fault = self.config.callback_delay_s, job.fault
        self.schedule(delay / 4, lambda: self._begin(job, begin))
        if push is None or fault.late_callback:
            self.schedule(delay, lambda: self.finish(job, finish))
        if push is None:
            return

        def final() -> None:
            self.finish(job, finish)
            self.video_path(job.id)  # a provider pushes once the video exists: render it now
            for _ in range(fault.callbacks):
                push(job, "final")

        if fault.progress_pushes:
            self.schedule(delay / 2, lambda: [push(job, "progress") for _ in range(fault.progress_pushes)])
        if fault.forged_push or fault.stale_push:
            self.schedule(delay / 2, lambda: push(job, "forged" if fault.forged_push else "stale"))
        self.schedule(self.config.late_delay_s if fault.late_callback else delay, final)

    def _begin(self, job: Job, begin: Outcome | None) -> None:
        with self.lock:
            if not job.terminal:
                job.state = "running"
                if begin is not None:
                    begin(job)

    def finish(self, job: Job, finish: Outcome) -> None:
        """Set the outcome once (under the lock): finishing twice must not change it."""
        with self.lock:
            if job.terminal:
                return
            job.state = "failed" if job.fault.fail else "succeeded"
            job.finished_at = time.time()
            finish(job)

    def schedule(self, delay: float, action: Callable[[], object]) -> None:
        def run() -> None:
            if self._stopping.is_set():
                return
            try:
                action()
            except Exception:  # a timer thread has nobody to report to but the log
                logger.exception("simulator background action failed")

        timer = threading.Timer(delay, run)
        timer.daemon = True
        with self.lock:
            if self._stopping.is_set():
                return
            self._timers = [pending for pending in self._timers if pending.is_alive()]
            self._timers.append(timer)
            timer.start()  # under the lock, so stop() never joins a timer that was not started

    def deliver(self, job: Job, url: str, body: bytes, headers: dict[str, str], kind: str) -> int | None:
        """POST one push and log the attempt on the job; the answer's status (None: no answer)."""
        if self._stopping.is_set() or self._http is None:
            return None
        attempt: dict[str, Any] = {"at": time.time(), "url": url, "kind": kind, "status": None, "error": None}
        try:
            headers = {"Content-Type": "application/json", **headers}
            attempt["status"] = self._http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as error:
            attempt["error"] = f"{type(error).__name__}: {error}"
        attempt["seconds"] = time.time() - attempt["at"]  # how long the push took to be answered
        with self.lock:
            job.callbacks.append(attempt)
        return attempt["status"]

    # -- videos --------------------------------------------------------------------------------

    def video_url(self, job: Job, kind: str = "final") -> str:
        """The job's video link; the one a forged push claims is never served (404)."""
        return f"{self.public_url}/files/{'forged-' if kind == 'forged' else ''}{job.id}.mp4"

    def video_path(self, job_id: str) -> Path | None:
        """The job's MP4 on disk, rendered on first request; None when there is no video."""
        job = self.job(job_id)
        if job is None or job.state != "succeeded" or job.fault.video_missing:
            return None
        path = self.video_dir / f"{job_id}.mp4"
        with job.render_lock:  # concurrent first downloads render once
            if not path.exists():
                partial, started = path.with_suffix(".part"), time.monotonic()
                size = {"width": job.width, "height": job.height, "seconds": job.seconds}
                render_mp4(partial, **size, seed=job_id, fps=self.config.render_fps)
                partial.replace(path)  # atomic, so a reader never sees half a file
                self.render_seconds.append(time.monotonic() - started)
        return path


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY_BYTES:
        handler.close_connection = True  # the unread body must not be taken for the next request
        raise bad_request("invalid Content-Length" if length < 0 else "request body too large")
    return handler.rfile.read(length) if length else b""
