"""fal.ai's queue under /fal (contract: shared/providers/fal-queue.md): submit, status, result, JWKS,
signed webhooks. Unknown input fields are ignored, as pydantic does, and noted in meta["ignored_fields"]."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.simulator import core
from devstack.simulator.core import INT, PROMPT, TEXT, YES, Field, Rule, SimError, one_of

_TYPE_ERRORS = {
    "string": "string_type",
    "boolean": "bool_type",
    "integer": "int_type",
    "number": "float_type",
}
_LTX_LONG = "Durations longer than 10 seconds are only supported with 25 FPS and 1080p resolution"


def _ltx_long_clips(values: dict[str, Any]) -> tuple[str, str] | None:
    if values["duration"] > 10 and (values["fps"], values["resolution"]) != (25, "1080p"):
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
    "cfg_scale": Field("number", default=0.5, minimum=0, maximum=1),
}
_LTX = {
    "prompt": PROMPT,
    "duration": one_of(6, 8, 10, 12, 14, 16, 18, 20, default=6),
    "resolution": one_of("1080p", "1440p", "2160p", default="1080p"),
    "fps": one_of(24, 25, 48, 50, default=25),
    "generate_audio": YES,
}
# Pages: fal.ai/models/<id>/llms.txt (veo3.1/image-to-video: fal.ai/docs/model-api-reference/...); Kling's and
# LTX's aspect_ratio and LTX's fps from secondary sources (clawhub.ai); LTX image "auto" unverified.
_KLING_RATIO = one_of("16:9", "9:16", "1:1", default="16:9")
_LTX_IMAGE = {"end_image_url": TEXT, "aspect_ratio": _AUTO}
# An endpoint id: (its input fields, the cross-field rule its page documents, answered as a value_error).
ENDPOINTS: dict[str, tuple[dict[str, Field], Rule | None]] = {
    "fal-ai/veo3.1": (_VEO | {"aspect_ratio": _WIDE}, None),
    "fal-ai/veo3.1/image-to-video": (_VEO | _IMAGE | {"aspect_ratio": _AUTO}, None),
    "fal-ai/kling-video/v2.5-turbo/pro/text-to-video": (_KLING | {"aspect_ratio": _KLING_RATIO}, None),
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": (_KLING | _IMAGE | {"tail_image_url": TEXT}, None),
    "fal-ai/ltx-2.3/text-to-video/fast": (_LTX | {"aspect_ratio": _WIDE}, _ltx_long_clips),
    "fal-ai/ltx-2.3/image-to-video/fast": (_LTX | _IMAGE | _LTX_IMAGE, _ltx_long_clips),
}


def _item(name: str | None, message: str, kind: str) -> dict[str, Any]:
    """One of pydantic's error items, as fal answers them (fal-queue.md, Errors)."""
    return {"loc": ["body", name] if name else ["body"], "msg": message, "type": kind}


def _detail(name: str, problem: str, spec: Field, _value: Any) -> dict[str, Any]:
    if problem == "missing":
        return _item(name, "Field required", "missing")
    if spec.options is not None:
        shown = [repr(option) if isinstance(option, str) else str(option) for option in spec.options]
        listed = f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]
        return _item(name, f"Input should be {listed}", "literal_error")
    if problem == "type":
        return _item(name, f"Input should be a valid {spec.kind}", _TYPE_ERRORS[spec.kind])
    low = problem == "minimum"
    bound = f"{'>=' if low else '<='} {spec.minimum if low else spec.maximum}"
    return _item(name, f"Input should be {bound}", "greater_than_equal" if low else "less_than_equal")


def _failure(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [_item(None, record["error"], record["error_type"])]


class Fal:
    """The fal queue under /fal, for the catalogue's fal endpoints."""

    name, prefix = "fal", "/fal"

    def __init__(self, sim: core.ProviderSimulator) -> None:
        self.sim, self.key = sim, sim.config.fal_key or sim.config.api_token
        # fal-queue.md, Signature verification 4: the JWKS publishes the signing key; never the forger's.
        self.signing_key, self._forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        ids = "|".join(map(re.escape, sorted(ENDPOINTS, key=len, reverse=True)))
        request = r"/(?P<app>[^/]+/[^/]+)/requests/(?P<request_id>[A-Za-z0-9_-]+)"
        self.routes = [
            ("GET", r"/\.well-known/jwks\.json", self.jwks),
            ("POST", rf"/(?P<endpoint>{ids})", self.submit),
            ("GET", rf"{request}/status", self.status),
            ("GET", request, self.result),
        ]

    def error_body(self, error: SimError) -> dict[str, Any]:
        """fal-queue.md, Errors: `{"detail": "..."}` or `{"detail": [{"loc", "msg", "type"}]}`."""
        return {"detail": error.message}  # a fal 422's message is its list of detail items

    def jwks(self, request: core.Request) -> core.Answer:
        """fal-queue.md, Signature verification 4: an OKP/Ed25519 JWK (RFC 8037), public."""
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        key = {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA", "kid": "sim-1"}
        return 200, {"keys": [key]}, {}

    def submit(self, request: core.Request) -> core.Answer:
        """fal-queue.md, Submit (Transport: `Authorization: Key $FAL_KEY`)."""
        request.check_bearer(self.key, scheme="Key")
        endpoint_id = request.groups["endpoint"]
        fields, rule = ENDPOINTS[endpoint_id]
        not_object = [_item(None, "Input should be a valid dictionary", "dict_type")]
        body = request.json_object(SimError(422, "validation_error", not_object))
        errors = [_detail(*found) for found in core.problems(fields, body)]
        values = core.filled(fields, body)
        if not errors and rule and (broken := rule(values)):
            errors.append(_item(broken[0], broken[1], "value_error"))
        if errors:
            raise SimError(422, "validation_error", errors)
        webhook = request.query.get("fal_webhook")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise core.bad_request("fal_webhook must be an http(s) URL")
        ratio, tier = str(values.get("aspect_ratio", "16:9")), str(values.get("resolution", "1080p"))
        seconds = int(str(values.get("duration", 5)).removesuffix("s"))
        request_id = str(uuid.uuid4())
        shape = (str(body.get("prompt", "")), *core.frame(ratio, tier), seconds)
        app = "/".join(endpoint_id.split("/")[:2])  # where its requests live (fal-queue.md, Status, result)
        record = {"request_id": request_id, "endpoint": endpoint_id, "app": app, "input": copy.deepcopy(body)}
        record |= {"webhook": webhook, "submitted_at": time.time(), "error": None, "error_type": None}
        # fal-queue.md, Submit: the URLs point back at this simulator's /fal prefix (no cancel: not simulated).
        record["response_url"] = base = f"{self.sim.url}{self.prefix}/{app}/requests/{request_id}"
        job = self.sim.new_job(self.name, shape, record, request_id)
        job.meta["ignored_fields"] = sorted(set(body) - set(fields))
        push = (lambda job, kind: self._push(job, webhook, kind)) if webhook else None
        self.sim.run(job, finish=self._finish, push=push)
        # gateway_request_id differs from request_id only after an internal retry.
        answer = {"status": "IN_QUEUE", "request_id": request_id, "gateway_request_id": request_id}
        return 200, {**answer, "response_url": base, "status_url": f"{base}/status", "queue_position": 0}, {}

    def status(self, request: core.Request) -> core.Answer:
        """fal-queue.md, Status, result, cancel."""
        job, record = self._job(request)
        if job.state == "running":
            return 200, {"status": "IN_PROGRESS"}, {}
        if not job.terminal:
            return 200, {"status": "IN_QUEUE", "queue_position": 0}, {}
        answer = {"status": "COMPLETED", "response_url": record["response_url"]}
        if record["error"]:
            answer.update(error=record["error"], error_type=record["error_type"])
        return 200, answer, {}

    def result(self, request: core.Request) -> core.Answer:
        """fal-queue.md, Status, result, cancel (before completion: 400, the simulator's choice)."""
        job, record = self._job(request)
        if not job.terminal:
            raise SimError(400, "in_progress", "Request is still in progress")
        if record["error"]:
            raise SimError(422, "validation_error", _failure(record))
        return 200, self._output(job), {}

    def _finish(self, job: core.Job) -> None:
        """A failure's error_type: fal's value is not recorded, generation_failed stands in."""
        if job.fault.fail:
            job.record.update(error=core.FAILURE_MESSAGE, error_type="generation_failed")
        job.record["finished_at"] = job.finished_at

    def _output(self, job: core.Job, kind: str = "final") -> dict[str, Any]:
        """fal-queue.md, Status, result, cancel (the shape is inferred from fal's image example)."""
        video = {"url": self.sim.video_url(job, kind), "content_type": "video/mp4"}
        video["file_name"] = f"{job.id}.mp4"
        if kind == "final":  # a forged or stale push claims a video it does not size
            path = self.sim.video_path(job.id)  # renders on first use, like the first download
            video["file_size"] = path.stat().st_size if path is not None else None
        return {"video": video}

    def _push(self, job: core.Job, url: str, kind: str) -> None:
        """fal-queue.md, Webhook, Signature verification: forged = an unpublished key, stale = old."""
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

    def _job(self, request: core.Request) -> tuple[core.Job, dict[str, Any]]:
        """The job a status/result path names, under its own app only."""
        request.check_bearer(self.key, scheme="Key")
        job = self.sim.job(request.groups["request_id"], self.name)
        if job is None or job.record["app"] != request.groups["app"]:
            raise SimError(404, "not_found", "Request not found")
        return job, job.record
