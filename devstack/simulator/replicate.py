"""Replicate under /replicate (contract: shared/providers/replicate.md): predictions, signed pushes, the
secret. MODELS are the models' own schemas, not catalogue.json's: a misspelt entry gets the API's 422."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from devstack.simulator import core
from devstack.simulator.core import INT, NO, PROMPT, URI, YES, Field, SimError, frame, one_of

_EVENT_NAMES = ("completed", "logs", "output", "start")  # a list: `in` must not hash what a client sent
_EVENTS = ", ".join(_EVENT_NAMES)
DEFAULT_EVENTS = frozenset({"output", "completed"})  # contract, "Create": what no filter sends
FINAL_RETRY_FACTORS = (1, 2, 4)  # "Webhook": only the final one is retried, backing off (x callback_delay_s)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # prediction ids: 26 lower-case base32 characters
# Problem titles of the engine's errors; the dialect's own carry theirs as the code.
_TITLES = {400: "Bad request", 404: "Not found", 500: "Internal server error", 504: "Gateway timeout"}


def _message(name: str, problem: str, spec: Field, value: Any) -> str:
    """Contract, "Errors"; stricter than Cog's coercion on purpose, so a wrong duration_format fails."""
    expected = "string" if spec.kind in ("uri", "url") else spec.kind
    text = {
        "missing": f"{name} is required",
        "type": f"Invalid type. Expected: {expected}, given: {type(value).__name__}",
        "format": "Does not match format 'uri'",
        "enum": f"{name} must be one of the following: {', '.join(map(str, spec.options or ()))}",
        "minimum": f"Must be greater than or equal to {spec.minimum}",
        "maximum": f"Must be less than or equal to {spec.maximum}",
    }[problem]
    return f"{name}: {text}"


@dataclass(frozen=True)
class Model:
    """A simulated Replicate model: its input schema, a cross-field rule, the (width, height) it renders."""

    route: str
    fields: dict[str, Field]
    dimensions: Callable[[dict[str, Any]], tuple[int, int]]  # on the input with defaults filled in
    rule: core.Rule = lambda _: None

    def validate(self, given: Any) -> tuple[dict[str, Any], list[str]]:
        """The input with defaults filled in, and every problem found (empty when valid)."""
        if not isinstance(given, dict):
            return {}, ["input: Invalid type. Expected: object"]
        found = [_message(*problem) for problem in core.problems(self.fields, given)]
        found += [f"{k}: Additional property {k} is not allowed" for k in given if k not in self.fields]
        values = core.filled(self.fields, given)
        if not found and (broken := self.rule(values)):
            found.append(f"{broken[0]}: {broken[1]}")
        return values, found


def _hailuo_rule(values: dict[str, Any]) -> tuple[str, str] | None:
    if values["duration"] == 10 and values["resolution"] != "768p":  # the schema's own description
        return "duration", "10 seconds is only available for 768p resolution"
    return None


_HAILUO_SIZES = {"512p": (912, 512), "768p": (1366, 768), "1080p": (1920, 1080)}
_SEEDANCE_SIZES = {"16:9": (1280, 720), "4:3": (960, 720), "1:1": (960, 960), "3:4": (720, 960)}
_SEEDANCE_SIZES |= {"9:16": (720, 1280), "21:9": (1680, 720), "9:21": (720, 1680)}
# Sources: the OpenAPI schemas in keremk/renku catalog/models/replicate/video/*.json @00384279; hailuo-02's
# Replicate schema page (version c43b610e). Sizes the input does not name (kling, seedance, hailuo) inferred.
_VEO = {
    "prompt": PROMPT,
    "aspect_ratio": one_of("16:9", "9:16", default="16:9"),
    "duration": one_of(4, 6, 8, default=8),
    "image": URI,
    "last_frame": URI,
    "negative_prompt": Field("string"),
    "resolution": one_of("720p", "1080p", default="1080p"),
    "generate_audio": YES,
    "seed": INT,
}
_KLING = {
    "prompt": PROMPT,
    "negative_prompt": Field("string", default=""),
    "start_image": URI,
    "end_image": URI,
    "aspect_ratio": one_of("16:9", "9:16", "1:1", default="16:9"),
    "duration": one_of(5, 10, default=5),
    "image": URI,  # deprecated: use start_image
}
_HAILUO = {
    "prompt": PROMPT,
    "first_frame_image": URI,
    "last_frame_image": URI,
    "duration": one_of(6, 10, default=6),
    "resolution": one_of("512p", "768p", "1080p", default="1080p"),
    "prompt_optimizer": YES,
}
_SEEDANCE = {
    "prompt": PROMPT,
    "image": URI,
    "last_frame_image": URI,
    "duration": Field("integer", default=5, minimum=2, maximum=12),
    "aspect_ratio": one_of("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21", default="16:9"),
    "fps": one_of(24, default=24),
    "camera_fixed": NO,
    "generate_audio": NO,
    "seed": INT,
}
_MODELS = (
    Model("google/veo-3.1-fast", _VEO, lambda values: frame(values["aspect_ratio"], values["resolution"])),
    Model("kwaivgi/kling-v2.5-turbo-pro", _KLING, lambda values: frame(values["aspect_ratio"], "1080p")),
    Model("minimax/hailuo-02", _HAILUO, lambda values: _HAILUO_SIZES[values["resolution"]], _hailuo_rule),
    Model("bytedance/seedance-1.5-pro", _SEEDANCE, lambda values: _SEEDANCE_SIZES[values["aspect_ratio"]]),
)
MODELS: dict[str, Model] = {model.route: model for model in _MODELS}


def _now_iso(moment: float | None = None) -> str:
    return datetime.fromtimestamp(moment or time.time(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


class Replicate:
    """The dialect (its data retention, an hour, is not simulated: no test runs that long)."""

    name, prefix = "replicate", "/replicate"

    def __init__(self, sim: core.ProviderSimulator) -> None:
        self.sim, self.secret = sim, _new_secret()
        self.routes = [
            ("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions", self.create),
            ("GET", r"/v1/predictions/(?P<id>[^/]+)", self.get),
            ("GET", r"/v1/webhooks/default/secret", self.webhook_secret),
        ]

    def error_body(self, error: SimError) -> dict[str, Any]:
        """RFC 7807 problem details (contract, "Errors"); a 429 carries only `detail` ("Rate limits")."""
        if error.status == 429:
            reset = error.headers.get("Retry-After", "1")
            return {"detail": f"Request was throttled. Your rate limit resets in ~{reset}s."}
        title = _TITLES.get(error.status, error.code)
        return {"title": title, "detail": error.message, "status": error.status}

    def _authorize(self, request: core.Request) -> None:
        """`Authorization: Bearer $REPLICATE_API_TOKEN` (contract, "Transport")."""
        refused = SimError(401, "Unauthenticated", "You did not pass a valid authentication token")
        request.check_bearer(self.sim.config.replicate_token or self.sim.config.api_token, refused=refused)

    def create(self, request: core.Request) -> core.Answer:
        """`POST /v1/models/{owner}/{name}/predictions`, the model named in the path (contract, "Create")."""
        self._authorize(request)
        if (model := MODELS.get(route := f"{request.groups['owner']}/{request.groups['name']}")) is None:
            raise SimError(404, "Not found", f"The requested model {route} could not be found")
        invalid = SimError(422, "Input validation failed", "- (root): Invalid type. Expected: object")
        body = request.json_object(invalid)
        values, problems = model.validate(body.get("input"))
        hook = self._hook(body, problems)
        if problems:
            raise SimError(422, "Input validation failed", "".join(f"- input.{item}\n" for item in problems))
        prediction_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))
        version = hashlib.sha256(model.route.encode()).hexdigest()  # simulator-only ids, stable per model
        record = {"id": prediction_id, "model": model.route, "version": version, "status": "starting"}
        record |= {"input": copy.deepcopy(body.get("input")), "logs": None, "output": None, "error": None}
        record |= {"data_removed": False, "created_at": _now_iso(), "started_at": None, "completed_at": None}
        get = f"{self.sim.url}{self.prefix}/v1/predictions/{prediction_id}"  # no cancel route: not simulated
        record |= {"urls": {"get": get, "web": f"https://replicate.com/p/{prediction_id}"}}
        shape = (str(values["prompt"]), *model.dimensions(values), int(values.get("duration", 5)))
        job = self.sim.new_job(self.name, shape, record | {"metrics": {}}, prediction_id)
        job.meta["hook"] = hook
        self.sim.run(job, finish=self._finish, push=self._push, begin=self._begin)
        return 201, self.sim.record(job.id), {}

    def _hook(self, body: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
        """Where the webhooks go, the events asked for, and the terminal event's stable webhook-id."""
        url, events = body.get("webhook"), body.get("webhook_events_filter")
        if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
            problems.append("webhook: Does not match format 'uri'")
        if events is not None and not (isinstance(events, list) and all(e in _EVENT_NAMES for e in events)):
            problems.append(f"webhook_events_filter: items must be one of the following: {_EVENTS}")
        if not isinstance(url, str) or problems:
            return None
        return {"url": url, "events": DEFAULT_EVENTS if events is None else set(events), "id": _message_id()}

    def _begin(self, job: core.Job) -> None:
        """The prediction starts processing (under the engine's lock)."""
        job.meta["started"] = time.time()
        job.record.update(status="processing", started_at=_now_iso(), logs="Starting video generation\n")

    def _finish(self, job: core.Job) -> None:
        """The terminal Prediction (under the engine's lock, once)."""
        record, finished = job.record, job.finished_at or time.time()
        started = job.meta.get("started", job.created_at)
        record.update(started_at=record["started_at"] or _now_iso(started), completed_at=_now_iso(finished))
        predict, total = round(finished - started, 6), round(finished - job.created_at, 6)
        record["metrics"] = {"predict_time": predict, "total_time": total}
        if job.fault.fail:
            record.update(status="failed", error=core.FAILURE_MESSAGE)
            tail = f"Traceback (most recent call last):\nRuntimeError: {core.FAILURE_MESSAGE}\n"
        else:
            record.update(status="succeeded", output=self.sim.video_url(job))
            tail = "100%|██████████| 50/50\nVideo written\n"
        record["logs"] = (record["logs"] or "") + tail

    def _push(self, job: core.Job, kind: str) -> None:
        """The engine's push hook; only `completed` is sent (the relay's filter), never progress events."""
        if kind in ("forged", "stale"):  # both claim a success; only the signature tells
            body = self.sim.record(job.id) | {"status": "succeeded", "output": self.sim.video_url(job, kind)}
            self._send(job, body, _message_id(), kind)
        elif kind == "final":
            self._event(job)

    def _event(self, job: core.Job, attempt: int = 0) -> None:
        """`completed` if the filter asks for it: one webhook-id, retried while refused ("Webhook")."""
        if (hook := job.meta["hook"]) is None or "completed" not in hook["events"]:
            return
        status = self._send(job, self.sim.record(job.id), hook["id"], "retry" if attempt else "final")
        if attempt < len(FINAL_RETRY_FACTORS) and not (status and 200 <= status < 300):
            delay = self.sim.config.callback_delay_s * FINAL_RETRY_FACTORS[attempt]
            self.sim.schedule(delay, lambda: self._event(job, attempt + 1))

    def _send(self, job: core.Job, body: dict[str, Any], message_id: str, kind: str) -> int | None:
        """The whole Prediction, signed per Standard Webhooks ("Signature"); forged/stale: see _push."""
        if (hook := job.meta["hook"]) is None:
            return None
        raw = json.dumps(body, separators=(",", ":"))
        moment = datetime.fromtimestamp(int(time.time()) - core.STALE_BY_S * (kind == "stale"), tz=UTC)
        secret = _new_secret() if kind == "forged" else self.secret
        signature = Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=raw)
        headers = {"webhook-id": message_id, "webhook-timestamp": str(int(moment.timestamp()))}
        headers["webhook-signature"] = signature
        return self.sim.deliver(job, hook["url"], raw.encode(), headers, kind=kind)

    def get(self, request: core.Request) -> core.Answer:
        """`GET /v1/predictions/{id}`: the Prediction (contract, "Lookup and cancel"), only this dialect's."""
        self._authorize(request)
        if (job := self.sim.job(request.groups["id"], self.name)) is None:
            raise SimError(404, "Not found", "The requested resource could not be found.")
        return 200, self.sim.record(job.id), {}

    def webhook_secret(self, request: core.Request) -> core.Answer:
        """`GET /v1/webhooks/default/secret` -> `{"key": "whsec_..."}` (contract, "Signature")."""
        self._authorize(request)
        return 200, {"key": self.secret}, {}
