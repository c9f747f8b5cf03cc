"""fal.ai's queue dialect under /fal: submit, status, result, cancel, JWKS, signed webhooks.

Contract: shared/providers/fal-queue.md (cited by section). ENDPOINTS: the catalogue's fal routes
with the input schemas their fal pages document; undefined fields are ignored, as a pydantic model
does (inferred), and noted in `meta["ignored_fields"]`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.simulator import core, schema
from devstack.simulator.core import Answer, Job, Request, SimError
from devstack.simulator.schema import INT, PROMPT, TEXT, YES, Field, Rule, one_of

FAILURE_TYPE, CANCELLED_TYPE = "generation_failed", "request_cancelled"  # fal's values are not recorded
_TYPE_ERRORS = {
    "string": "string_type",
    "boolean": "bool_type",
    "integer": "int_type",
    "number": "float_type",
}


@dataclass(frozen=True)
class Endpoint:
    """A fal endpoint's input schema, from its page (above ENDPOINTS)."""

    id: str
    fields: dict[str, Field]
    rule: Rule | None = None  # documented on the page; fal answers it as a value_error

    @property
    def app(self) -> str:
        """`owner/alias`: where its requests live (fal-queue.md, Status, result, cancel)."""
        return "/".join(self.id.split("/")[:2])


_LTX_LONG = "Durations longer than 10 seconds are only supported with 25 FPS and 1080p resolution"


def _ltx_long_clips(values: dict[str, Any]) -> tuple[str, str] | None:
    if values["duration"] > 10 and (values["fps"] != 25 or values["resolution"] != "1080p"):
        return "duration", _LTX_LONG
    return None


_IMAGE = {"image_url": PROMPT}  # a required string, not checked as a URL by fal's schemas
_WIDE, _AUTO = one_of("16:9", "9:16", default="16:9"), one_of("auto", "16:9", "9:16", default="auto")
_VEO = {
    "prompt": PROMPT,
    "duration": one_of("4s", "6s", "8s", default="8s"),
    "negative_prompt": TEXT,
    "resolution": one_of("720p", "1080p", "4k", default="720p"),
    "generate_audio": YES,
    "seed": INT,
    "auto_fix": Field("boolean"),
    "safety_tolerance": one_of("1", "2", "3", "4", "5", "6", default="4"),
}
_KLING = {
    "prompt": PROMPT,
    "duration": one_of("5", "10", default="5"),
    "negative_prompt": Field("string", default="blur, distort, and low quality"),
    "cfg_scale": schema.number(0, 1, 0.5),
}
_LTX = {
    "prompt": PROMPT,
    "duration": one_of(6, 8, 10, 12, 14, 16, 18, 20, default=6),
    "resolution": one_of("1080p", "1440p", "2160p", default="1080p"),
    "fps": one_of(24, 25, 48, 50, default=25),
    "generate_audio": YES,
}
# Pages: https://fal.ai/models/<id>/llms.txt; veo3.1/image-to-video's: fal.ai/docs/model-api-reference/
# video-generation-api/veo3.1-image-to-video. Kling's and LTX's aspect_ratio (and LTX's fps) options
# are secondary (the catalogue entry's notes, clawhub.ai); "auto" for LTX's image endpoint is unverified.
_KLING_IMAGE = {"tail_image_url": TEXT}
_LTX_IMAGE = {"end_image_url": TEXT, "aspect_ratio": _AUTO}
_KLING_RATIO = one_of("16:9", "9:16", "1:1", default="16:9")
ENDPOINTS: dict[str, Endpoint] = {
    e.id: e
    for e in (
        Endpoint("fal-ai/veo3.1", _VEO | {"aspect_ratio": _WIDE}),
        Endpoint("fal-ai/veo3.1/image-to-video", _VEO | _IMAGE | {"aspect_ratio": _AUTO}),
        Endpoint("fal-ai/kling-video/v2.5-turbo/pro/text-to-video", _KLING | {"aspect_ratio": _KLING_RATIO}),
        Endpoint("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", _KLING | _IMAGE | _KLING_IMAGE),
        Endpoint("fal-ai/ltx-2.3/text-to-video/fast", _LTX | {"aspect_ratio": _WIDE}, _ltx_long_clips),
        Endpoint("fal-ai/ltx-2.3/image-to-video/fast", _LTX | _IMAGE | _LTX_IMAGE, _ltx_long_clips),
    )
}


def _detail(name: str, problem: str, spec: Field) -> dict[str, Any]:
    """One of pydantic's error items, as fal answers them (fal-queue.md, Errors)."""
    if problem == "missing":
        kind, message = "missing", "Field required"
    elif spec.options is not None:
        shown = [repr(option) if isinstance(option, str) else str(option) for option in spec.options]
        listed = f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]
        kind, message = "literal_error", f"Input should be {listed}"
    elif problem == "type":
        kind, message = _TYPE_ERRORS[spec.kind], f"Input should be a valid {spec.kind}"
    elif problem == "minimum":
        kind, message = "greater_than_equal", f"Input should be >= {spec.minimum}"
    else:
        kind, message = "less_than_equal", f"Input should be <= {spec.maximum}"
    return _item(name, message, kind)


def _item(name: str | None, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", name] if name else ["body"], "msg": message, "type": kind}


def validate(endpoint: Endpoint, body: dict[str, Any]) -> list[dict[str, Any]]:
    """fal's 422 detail items for a body, empty when valid; the cross-field rule runs last."""
    errors = [_detail(*found[:3]) for found in schema.problems(endpoint.fields, body)]
    if not errors and endpoint.rule and (broken := endpoint.rule(schema.filled(endpoint.fields, body))):
        errors.append(_item(broken[0], broken[1], "value_error"))
    return errors


class Invalid(SimError):
    """fal's validation answer: 422 with a list of detail items (fal-queue.md, Errors)."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(422, "validation_error", "; ".join(item["msg"] for item in detail))
        self.detail = detail


def _failure(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [_item(None, record["error"], record["error_type"])]


class Fal:
    """The fal queue under /fal, for the catalogue's fal endpoints."""

    name = "fal"
    prefix = "/fal"

    def __init__(self, sim: core.ProviderSimulator) -> None:
        self.sim = sim
        # fal-queue.md, Signature verification 4: the JWKS publishes the signing key; never the forger's.
        self.signing_key, self._forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        self._kids = 1

    @property
    def key(self) -> str:
        return self.sim.config.fal_key or self.sim.config.api_token

    def rotate_key(self) -> None:
        """Sign with a new key from now on and publish only it."""
        self.signing_key, self._kids = Ed25519PrivateKey.generate(), self._kids + 1

    def routes(self) -> list[core.Route]:
        ids = "|".join(re.escape(endpoint_id) for endpoint_id in sorted(ENDPOINTS, key=len, reverse=True))
        request = r"/(?P<app>[^/]+/[^/]+)/requests/(?P<request_id>[A-Za-z0-9_-]+)"
        return [
            ("GET", re.compile(r"/\.well-known/jwks\.json"), self.jwks),
            ("POST", re.compile(rf"/(?P<endpoint>{ids})"), self.submit),
            ("GET", re.compile(rf"{request}/status"), self.status),
            ("PUT", re.compile(rf"{request}/cancel"), self.cancel),
            ("GET", re.compile(request), self.result),
        ]

    def error_body(self, error: SimError) -> dict[str, Any]:
        """fal-queue.md, Errors: `{"detail": "..."}` or `{"detail": [{"loc", "msg", "type"}]}`."""
        return {"detail": error.detail if isinstance(error, Invalid) else error.message}

    def jwks(self, request: Request) -> Answer:
        """fal-queue.md, Signature verification 4: an OKP/Ed25519 JWK (RFC 8037), public."""
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        key = {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA"}
        return 200, {"keys": [{**key, "kid": f"sim-{self._kids}"}]}, {}

    def submit(self, request: Request) -> Answer:
        """fal-queue.md, Submit (Transport: `Authorization: Key $FAL_KEY`)."""
        core.check_bearer(request, self.key, scheme="Key")
        endpoint = ENDPOINTS[request.groups["endpoint"]]
        body = request.json()
        if not isinstance(body, dict):
            raise Invalid([_item(None, "Input should be a valid dictionary", "dict_type")])
        if errors := validate(endpoint, body):
            raise Invalid(errors)
        webhook = request.query.get("fal_webhook")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise core.bad_request("fal_webhook must be an http(s) URL")
        values, request_id = schema.filled(endpoint.fields, body), str(uuid.uuid4())
        ratio, tier = str(values.get("aspect_ratio", "16:9")), str(values.get("resolution", "1080p"))
        seconds = int(str(values.get("duration", 5)).removesuffix("s"))
        shape = (str(body.get("prompt", "")), *schema.frame(ratio, tier), seconds)
        record = {
            "request_id": request_id,
            "gateway_request_id": request_id,  # differs only after an internal retry
            "endpoint": endpoint.id,
            "app": endpoint.app,
            "input": copy.deepcopy(body),
            "webhook": webhook,
            "submitted_at": time.time(),
            "cancelled": False,
            "error": None,
            "error_type": None,
        }
        job = self.sim.new_job(self.name, shape, record, request_id)
        job.meta["ignored_fields"] = sorted(set(body) - set(endpoint.fields))
        push = (lambda job, kind: self._push(job, webhook, kind)) if webhook else None
        self.sim.run(job, finish=self._finish, push=push)
        answer = {"status": "IN_QUEUE", "request_id": request_id, "gateway_request_id": request_id}
        return 200, {**answer, **self._urls(endpoint.app, request_id), "queue_position": 0}, {}

    def status(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel."""
        job, record = self._job(request)
        logs: list[dict[str, Any]] | None = [] if request.query.get("logs") == "1" else None
        if job.state == "running":
            return 200, {"status": "IN_PROGRESS", "logs": logs}, {}
        if not job.terminal:
            return 200, {"status": "IN_QUEUE", "queue_position": 0, "logs": logs}, {}
        answer: dict[str, Any] = {
            "status": "COMPLETED",
            "logs": logs,
            "metrics": {"inference_time": round((job.finished_at or job.created_at) - job.created_at, 3)},
            "response_url": self._urls(record["app"], job.id)["response_url"],
        }
        if record["error"]:
            answer.update(error=record["error"], error_type=record["error_type"])
        return 200, answer, {}

    def result(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel (before completion: 400, the simulator's choice)."""
        job, record = self._job(request)
        if not job.terminal:
            raise SimError(400, "in_progress", "Request is still in progress")
        if record["error"]:
            raise Invalid(_failure(record))
        return 200, self._output(job), {}

    def cancel(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel (the answers are unverified): it ends as an error."""
        job, record = self._job(request)
        if job.terminal:
            return 400, {"status": "ALREADY_COMPLETED"}, {}
        record["cancelled"] = True  # read by _finish, under the engine's lock
        return 202, {"status": "CANCELLATION_REQUESTED"}, {}

    def _finish(self, job: Job) -> None:
        record = job.record
        if record["cancelled"]:
            record.update(error="Request was cancelled", error_type=CANCELLED_TYPE)
        elif job.fault.fail:
            record.update(error=core.FAILURE_MESSAGE, error_type=FAILURE_TYPE)
        record["finished_at"] = job.finished_at

    def _output(self, job: Job, kind: str = "final") -> dict[str, Any]:
        """fal-queue.md, Status, result, cancel (the shape is inferred from fal's image example)."""
        video: dict[str, Any] = {"url": self.sim.video_url(job, kind), "content_type": "video/mp4"}
        video["file_name"] = f"{job.id}.mp4"
        if kind != "final":  # a forged or stale push claims a video it does not size
            return {"video": video}
        path = self.sim.video_path(job.id)  # renders on first use, like the first download
        video["file_size"] = path.stat().st_size if path is not None else None
        return {"video": video, "seed": int(hashlib.sha256(job.id.encode()).hexdigest()[:8], 16)}

    def _push(self, job: Job, url: str, kind: str) -> None:
        """fal-queue.md, Webhook, Signature verification: forged = an unpublished key, stale = old."""
        if kind == "progress":
            return
        record = self.sim.record(job.id) or {}
        if kind == "final" and record.get("error"):
            detail = {"detail": _failure(record)}
            outcome = {"status": "ERROR", "error": "Invalid status code: 422", "payload": detail}
        else:
            outcome = {"status": "OK", "payload": self._output(job, kind)}
        raw = json.dumps({"request_id": job.id, "gateway_request_id": job.id, **outcome}).encode()
        timestamp = str(int(time.time()) - (core.STALE_BY_S if kind == "stale" else 0))
        user = self.sim.config.fal_user_id
        message = "\n".join((job.id, user, timestamp, hashlib.sha256(raw).hexdigest())).encode()
        signature = (self._forger if kind == "forged" else self.signing_key).sign(message).hex()
        headers = {"Request-Id": job.id, "User-Id": user, "Timestamp": timestamp, "Signature": signature}
        self.sim.deliver(job, url, raw, {f"X-Fal-Webhook-{k}": v for k, v in headers.items()}, kind=kind)

    def _job(self, request: Request) -> tuple[Job, dict[str, Any]]:
        """The job a status/result/cancel path names, under its own app only."""
        core.check_bearer(request, self.key, scheme="Key")
        job = self.sim.job(request.groups["request_id"], self.name)
        if job is None or job.record["app"] != request.groups["app"]:
            raise SimError(404, "not_found", "Request not found")
        return job, job.record

    def _urls(self, app: str, request_id: str) -> dict[str, str]:
        """fal-queue.md, Submit: the URLs point back at this simulator's /fal prefix."""
        base = f"{self.sim.public_url}{self.prefix}/{app}/requests/{request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}
