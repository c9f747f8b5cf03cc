"""The engine: one server, jobs and their lifecycle, faults, MP4s, the push log; a dialect per family
(AceData at /, fal at /fal, Replicate at /replicate), all keeping shared/providers/README.md's rules."""

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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
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


@dataclass(frozen=True)
class FaultMode:
    """What one fault mode changes about a job; the default instance is a clean run."""

    create_error: tuple[int, str] | None = None  # refuse the create with this status and error code
    fail: bool = False  # finish with the provider's failure instead of a video
    callbacks: int = 1  # how often the final push is sent: 0 = lost, 2 = duplicated
    late_callback: bool = False  # the final push comes after late_delay_s; the job finishes on time
    video_missing: bool = False  # the job succeeds but its video URL answers 404
    video_unavailable: int = 0  # the first N downloads answer 503
    false_push: str | None = None  # first a "forged" push (wrong signature or token) or a "stale" one
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
    "forged-push": FaultMode(false_push="forged"),
    "stale-push": FaultMode(false_push="stale"),
    # The link lapses as the job finishes and the push comes late: any copy is too late.
    "expired-url": FaultMode(url_ttl_s=0.0, late_callback=True),
    "429": FaultMode(create_error=(429, "too_many_requests")),
    "500": FaultMode(create_error=(500, "api_error")),
    "504": FaultMode(create_error=(504, "timeout")),
}


def resolve_fault(mode: str) -> tuple[FaultMode, int | None]:
    """A mode by name, with the attempt limit of a "429x2"-style name (else None)."""
    if mode in FAULTS:
        return FAULTS[mode], None
    counted = _COUNTED.match(mode)
    if counted and counted["base"] in FAULTS and FAULTS[counted["base"]].create_error:
        return FAULTS[counted["base"]], int(counted["times"])
    raise ValueError(f"unknown simulator fault {mode!r}; known: {', '.join(FAULTS)} (create faults take xN)")


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
    fal_key: str | None = None
    fal_user_id: str = "sim-fal-user"
    replicate_token: str | None = None


class SimError(Exception):
    """An error answer, worded by each dialect's error_body (a fal 422's message: its detail items)."""

    def __init__(self, status: int, code: str, message: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


bad_request = functools.partial(SimError, 400, "bad_request")  # bad_request(message): a 400


@dataclass
class Request:
    method: str
    path: str  # without the dialect's prefix or the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    groups: dict[str, str] = field(default_factory=dict)

    def json_object(self, refused: SimError | None = None) -> dict[str, Any]:
        """The body, which must be a JSON object; else `refused` (default: a 400)."""
        try:
            body = json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            raise refused or bad_request("request body must be a JSON object")
        return body

    def check_bearer(self, token: str, scheme: str = "Bearer", refused: SimError | None = None) -> None:
        """The Authorization header must be `<scheme> <token>`; else `refused` (default: a 401)."""
        given_scheme, _, given = self.headers.get("authorization", "").strip().partition(" ")
        matches = secrets.compare_digest(given.strip().encode(), token.encode())
        if given_scheme.lower() != scheme.lower() or not matches:
            raise refused or SimError(401, "invalid_token", "the token is invalid")


Answer = tuple[int, Any, dict[str, str]]  # status, JSON body, extra headers
Shape = tuple[str, int, int, int]  # prompt, width, height, seconds of the video a job renders
Push = Callable[["Job", str], None]  # push(job, kind): kind is forged | stale | final
Outcome = Callable[["Job"], None]  # writes a job's record as it begins or finishes (under the lock)


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


def refuse(when: object, message: str) -> None:
    """A 400 naming the field when a rule across fields is broken."""
    if when:
        raise bad_request(message)


_tls_context = functools.cache(ssl.create_default_context)  # ~40 ms to load: one for all simulators


def _send(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
    """A JSON answer, or bytes as they are (a video); HEAD gets the headers only."""
    if not isinstance(body, bytes):
        body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    handler.send_response(status)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


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
        self._timers: list[threading.Timer] = []
        self.render_seconds: deque[float] = deque(maxlen=100_000)  # wall seconds per MP4 render
        self._stopping = threading.Event()
        self._server: QuietHTTPServer | None = None
        self._http: httpx.Client | None = None
        # Longest prefix first, so "/fal" wins over the root dialect (AceData, last).
        self.dialects: list[Any] = [Fal(self), Replicate(self), AceData(self)]

    def start(self) -> ProviderSimulator:
        self.video_dir = Path(tempfile.mkdtemp(prefix="sora-sim-"))  # removed on stop
        json_body = {"Content-Type": "application/json"}  # every push is JSON
        self._http = local_http(timeout=CALLBACK_TIMEOUT_S, verify=_tls_context(), headers=json_body)
        self._server = QuietHTTPServer(self, self.config.port, host=self.config.host)
        self._server.start_background("sora-simulator")
        self.url = f"http://{self.config.host}:{self.port}"
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
        if self._server is not None and self._http is not None:
            self._server.stop_background()
            self._http.close()
        self._server = self._http = None
        shutil.rmtree(self.video_dir, ignore_errors=True)

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])  # type: ignore[union-attr]  # once started

    def base_url(self, dialect: str) -> str:
        """Where the relay reaches a dialect (its provider's base URL in the local stack)."""
        return self.url + next(item.prefix for item in self.dialects if item.name == dialect)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Route one request (QuietHTTPServer calls this): video files, then the dialects."""
        (path, _, query), method = handler.path.partition("?"), handler.command
        dialect = self.dialects[-1]  # the root dialect's shape until a prefix picks another
        try:
            if method in ("GET", "HEAD") and (match := _FILE_ROUTE.match(path)):
                return _send(handler, *self._video(match["job_id"], counted=method == "GET"))
            dialect = next(d for d in self.dialects if path == d.prefix or path.startswith(d.prefix + "/"))
            headers = {name.lower(): value for name, value in handler.headers.items()}
            query_args = dict(parse_qsl(query, keep_blank_values=True))
            length = handler.headers.get("Content-Length") or "0"
            # A bad length must not be a 500 (int()) or a read that hangs (negative, or too long).
            if not re.fullmatch("[0-9]+", length) or int(length) > MAX_BODY_BYTES:
                handler.close_connection = True  # the unread body must not be taken for the next request
                raise bad_request(f"invalid Content-Length {length!r} (at most {MAX_BODY_BYTES} bytes)")
            body = handler.rfile.read(int(length))
            request = Request(method, path[len(dialect.prefix) :] or "/", query_args, headers, body)
            for route_method, pattern, answer in dialect.routes:
                if route_method == method and (found := re.fullmatch(pattern, request.path)):
                    request.groups = found.groupdict()
                    return _send(handler, *answer(request))
            raise SimError(404, "no_api", f"no API for {method} {path}")
        except SimError as error:
            _send(handler, error.status, dialect.error_body(error), error.headers)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away during %s %s", method, path)
        except Exception:  # a simulator bug must answer like a provider does, not hang
            logger.exception("simulator error on %s %s", method, path)
            _send(handler, 500, dialect.error_body(SimError(500, "api_error", "simulator error")), {})

    def _video(self, job_id: str, counted: bool) -> Answer:
        """A job's MP4, unless its link expired (403), it has none (404) or video-503 holds it back."""
        job = self.job(job_id)
        ttl = job.fault.url_ttl_s if job is not None else None
        if job and ttl is not None and job.finished_at is not None and time.time() > job.finished_at + ttl:
            raise SimError(403, "expired", "the signed URL has expired")
        if (path := self.video_path(job_id)) is None or job is None:
            raise SimError(404, "not_found", f"no video for {job_id}")
        if counted:
            with self.lock:
                job.downloads += 1
            if job.downloads <= job.fault.video_unavailable:
                raise SimError(503, "service_unavailable", "the video is not available right now")
        return 200, path.read_bytes(), {"Content-Type": "video/mp4"}  # small clips

    def job(self, job_id: str, dialect: str | None = None) -> Job | None:
        """A job by id; with `dialect`, only one of that dialect's (another's id is unknown there)."""
        with self.lock:
            job = self._jobs.get(job_id)
        return job if job is not None and dialect in (None, job.dialect) else None

    def jobs(self) -> list[Job]:
        with self.lock:
            return list(self._jobs.values())

    def record(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(job.record) if (job := self._jobs.get(job_id)) else None

    def task_state(self, job_id: str) -> dict[str, Any] | None:
        """A copy of the record, its fault mode and every push attempt (what e2e tests read)."""
        with self.lock:
            if (job := self._jobs.get(job_id)) is None:
                return None
            state = {"record": job.record, "dialect": job.dialect, "state": job.state}
            return copy.deepcopy({**state, "fault": job.fault_name, "callbacks": job.callbacks})

    def create_attempts(self, fault: str, prompt: str) -> int:
        """How many creates came for a create-time fault and prompt (the relay must not resend)."""
        with self.lock:
            return self._create_attempts.get((fault, prompt), 0)

    def new_job(self, dialect: str, shape: Shape, record: dict[str, Any], job_id: str) -> Job:
        """Register a job, or raise the create-time fault its prompt (or the default) asks for."""
        marker = _MARKER.search(shape[0])
        fault_name = marker.group(1) if marker else (self.config.fault or "none")
        try:
            fault, limit = resolve_fault(fault_name)
        except ValueError as error:
            raise bad_request(f"prompt: {error}") from None
        if fault.create_error:
            with self.lock:
                key = (fault_name, shape[0])
                attempt = self._create_attempts[key] = self._create_attempts.get(key, 0) + 1
            if limit is None or attempt <= limit:
                status, code = fault.create_error
                headers = {"Retry-After": "1"} if status == 429 else None
                raise SimError(status, code, f"simulated {status} on create (attempt {attempt})", headers)
        job = Job(job_id, dialect, *shape, fault_name, fault, record)
        with self.lock:
            self._jobs[job.id] = job
        return job

    def run(self, job: Job, finish: Outcome, push: Push | None, begin: Outcome | None = None) -> None:
        """Running at delay/4 (`begin`), done at the delay (`finish`); pushes halfway, then "final"."""
        delay, fault = self.config.callback_delay_s, job.fault
        self.schedule(delay / 4, lambda: self._begin(job, begin))
        if push is None or fault.late_callback:
            self.schedule(delay, lambda: self._finish(job, finish))
        if push is None:
            return

        def final() -> None:
            self._finish(job, finish)
            self.video_path(job.id)  # a provider pushes once the video exists: render it now
            for _ in range(fault.callbacks):
                push(job, "final")

        if false_push := fault.false_push:
            self.schedule(delay / 2, lambda: push(job, false_push))
        self.schedule(self.config.late_delay_s if fault.late_callback else delay, final)

    def _begin(self, job: Job, begin: Outcome | None) -> None:
        with self.lock:
            if not job.terminal:
                job.state = "running"
                if begin is not None:
                    begin(job)

    def _finish(self, job: Job, finish: Outcome) -> None:
        """Set the outcome once (under the lock): finishing twice must not change it."""
        with self.lock:
            if not job.terminal:
                job.state = "failed" if job.fault.fail else "succeeded"
                job.finished_at = time.time()
                finish(job)

    def schedule(self, delay: float, action: Callable[[], object]) -> None:
        def run() -> None:
            if not self._stopping.is_set():
                try:
                    action()
                except Exception:  # a timer thread has nobody to report to but the log
                    logger.exception("simulator background action failed")

        timer = threading.Timer(delay, run)
        timer.daemon = True
        with self.lock:
            if not self._stopping.is_set():
                self._timers = [pending for pending in self._timers if pending.is_alive()] + [timer]
                timer.start()  # under the lock, so stop() never joins a timer that was not started

    def deliver(self, job: Job, url: str, body: bytes, headers: dict[str, str], kind: str) -> int | None:
        """POST one push and log the attempt on the job; the answer's status (None: no answer)."""
        if self._stopping.is_set() or self._http is None:
            return None
        attempt: dict[str, Any] = {"at": time.time(), "url": url, "kind": kind, "status": None, "error": None}
        try:
            attempt["status"] = self._http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as error:
            attempt["error"] = f"{type(error).__name__}: {error}"
        attempt["seconds"] = time.time() - attempt["at"]  # how long the push took to be answered
        with self.lock:
            job.callbacks.append(attempt)
        return attempt["status"]

    def video_url(self, job: Job, kind: str = "final") -> str:
        """The job's video link; the one a forged push claims is never served (404)."""
        return f"{self.url}/files/{'forged-' if kind == 'forged' else ''}{job.id}.mp4"

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


# -- input fields: `problems` finds what is wrong; each dialect words it its provider's way ("Errors").

SHORT_SIDES = {"480p": 480, "720p": 720, "768p": 768, "1080p": 1080, "1440p": 1440, "2160p": 2160, "4k": 2160}
# A rule across fields, on the values with defaults filled in: (field, message) when broken.
Rule = Callable[[dict[str, Any]], tuple[str, str] | None]
_SCHEMES = {"url": ("http://", "https://"), "uri": ("http://", "https://", "data:")}


@dataclass(frozen=True)
class Field:
    """One input field. None counts as absent, so the default applies (every provider's way)."""

    kind: str  # string | url (http/s) | uri (also data:) | integer | number | boolean | strings | object
    options: Collection[Any] | None = None  # an enum or a range; the value must match its type too
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with a given (not None) value: type, format, enum, minimum, maximum."""
        if not _is_kind(value, self.kind):
            return "type"
        if self.kind in _SCHEMES and not value.startswith(_SCHEMES[self.kind]):
            return "format"
        if self.options is not None and not any(type(value) is type(o) and value == o for o in self.options):
            return "enum"
        if self.minimum is not None and value < self.minimum:
            return "minimum"
        if self.maximum is not None and value > self.maximum:
            return "maximum"
        return None


def one_of(*options: Any, default: Any = None, required: bool = False) -> Field:
    """An enum field; its kind is its options' (strings or integers)."""
    return Field("string" if isinstance(options[0], str) else "integer", options, default, required)


PROMPT, TEXT, FLAG, INT = Field("string", required=True), Field("string"), Field("boolean"), Field("integer")
URL, URI, URLS = Field("url"), Field("uri"), Field("strings")
YES, NO = Field("boolean", default=True), Field("boolean", default=False)


def _is_kind(value: Any, kind: str) -> bool:
    if kind in ("integer", "number"):
        allowed = int if kind == "integer" else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, {"boolean": bool, "object": dict}.get(kind, str))


def problems(fields: dict[str, Field], body: dict[str, Any]) -> list[tuple[str, str, Field, Any]]:
    """Every field's problem in declaration order: "missing" or one of Field.problem's."""
    found = []
    for name, spec in fields.items():
        value = body.get(name)
        if value is None or (spec.required and isinstance(value, str) and not value.strip()):
            if spec.required:
                found.append((name, "missing", spec, value))
        elif problem := spec.problem(value):
            found.append((name, problem, spec, value))
    return found


def filled(fields: dict[str, Field], body: dict[str, Any]) -> dict[str, Any]:
    """The body with each absent field's default."""
    values = {name: spec.default for name, spec in fields.items() if spec.default is not None}
    return values | {name: value for name, value in body.items() if value is not None}


def frame(ratio: str, tier: str) -> tuple[int, int]:
    """(width, height) of a ratio at a tier; "auto"/"adaptive" follow an image not read here: 16:9."""
    short = SHORT_SIDES[tier.lower()]
    across, down = (int(part) for part in ("16:9" if ratio in ("auto", "adaptive") else ratio).split(":"))
    if across >= down:
        return round(short * across / down / 2) * 2, short
    return short, round(short * down / across / 2) * 2
