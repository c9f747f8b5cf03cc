"""fal.ai's queue dialect under /fal: submit, status, result, cancel, JWKS, signed webhooks.

Contract: shared/providers/fal-queue.md (cited below by section). ENDPOINTS are the catalogue's
fal routes with the input schemas their fal pages document. Fields an endpoint does not define
are ignored, as a pydantic model does (inferred), and noted in `meta["ignored_fields"]`.
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.simulator.core import (
    FAILURE_MESSAGE,
    STALE_BY_S,
    Answer,
    Job,
    ProviderSimulator,
    Request,
    Route,
    SimError,
    bad_request,
    check_bearer,
)
from devstack.simulator.schema import Field, Rule, filled, frame, problems

FAILURE_TYPE = "generation_failed"  # the simulator's own error_type: fal's values are not recorded
CANCELLED_TYPE = "request_cancelled"  # likewise


# -- the simulated endpoints' input schemas ---------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A fal endpoint's input schema, from the page named in `source`."""

    id: str
    source: str
    fields: dict[str, Field]
    rule: Rule | None = None  # documented on the page; fal answers it as a value_error

    @property
    def app(self) -> str:
        """`owner/alias`: where its requests live (fal-queue.md, Status, result, cancel)."""
        return "/".join(self.id.split("/")[:2])


def _ltx_long_clips(values: dict[str, Any]) -> tuple[str, str] | None:
    if values["duration"] > 10 and (values["fps"] != 25 or values["resolution"] != "1080p"):
        return (
            "duration",
            "Durations longer than 10 seconds are only supported with 25 FPS and 1080p resolution",
        )
    return None


_VEO_COMMON = {
    "prompt": Field("string", required=True),
    "duration": Field("string", options=("4s", "6s", "8s"), default="8s"),
    "negative_prompt": Field("string"),
    "resolution": Field("string", options=("720p", "1080p", "4k"), default="720p"),
    "generate_audio": Field("boolean", default=True),
    "seed": Field("integer"),
    "auto_fix": Field("boolean"),
    "safety_tolerance": Field("string", options=("1", "2", "3", "4", "5", "6"), default="4"),
}
_KLING_COMMON = {
    "prompt": Field("string", required=True),
    "duration": Field("string", options=("5", "10"), default="5"),
    "negative_prompt": Field("string", default="blur, distort, and low quality"),
    "cfg_scale": Field("number", default=0.5, minimum=0, maximum=1),
}
_LTX_COMMON = {
    "prompt": Field("string", required=True),
    "duration": Field("integer", options=(6, 8, 10, 12, 14, 16, 18, 20), default=6),
    "resolution": Field("string", options=("1080p", "1440p", "2160p"), default="1080p"),
    "fps": Field("integer", options=(24, 25, 48, 50), default=25),
    "generate_audio": Field("boolean", default=True),
}

ENDPOINTS: dict[str, Endpoint] = {
    endpoint.id: endpoint
    for endpoint in (
        Endpoint(
            "fal-ai/veo3.1",
            "https://fal.ai/models/fal-ai/veo3.1/llms.txt",
            {**_VEO_COMMON, "aspect_ratio": Field("string", options=("16:9", "9:16"), default="16:9")},
        ),
        Endpoint(
            "fal-ai/veo3.1/image-to-video",
            "https://fal.ai/docs/model-api-reference/video-generation-api/veo3.1-image-to-video",
            {
                **_VEO_COMMON,
                "image_url": Field("string", required=True),
                "aspect_ratio": Field("string", options=("auto", "16:9", "9:16"), default="auto"),
            },
        ),
        Endpoint(
            "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
            "https://fal.ai/models/fal-ai/kling-video/v2.5-turbo/pro/text-to-video/llms.txt",
            # The aspect_ratio options are secondary (see the catalogue entry's notes).
            {
                **_KLING_COMMON,
                "aspect_ratio": Field("string", options=("16:9", "9:16", "1:1"), default="16:9"),
            },
        ),
        Endpoint(
            "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
            "https://fal.ai/models/fal-ai/kling-video/v2.5-turbo/pro/image-to-video/llms.txt",
            {**_KLING_COMMON, "image_url": Field("string", required=True), "tail_image_url": Field("string")},
        ),
        Endpoint(
            "fal-ai/ltx-2.3/text-to-video/fast",
            "https://fal.ai/models/fal-ai/ltx-2.3/text-to-video/fast/llms.txt",
            # aspect_ratio and fps options are secondary (clawhub.ai), the rest from the page.
            {**_LTX_COMMON, "aspect_ratio": Field("string", options=("16:9", "9:16"), default="16:9")},
            rule=_ltx_long_clips,
        ),
        Endpoint(
            "fal-ai/ltx-2.3/image-to-video/fast",
            "https://fal.ai/models/fal-ai/ltx-2.3/image-to-video/fast/llms.txt",
            # "auto" for the image endpoint is unverified.
            {
                **_LTX_COMMON,
                "image_url": Field("string", required=True),
                "end_image_url": Field("string"),
                "aspect_ratio": Field("string", options=("auto", "16:9", "9:16"), default="auto"),
            },
            rule=_ltx_long_clips,
        ),
    )
}

_TYPE_ERRORS = {
    "string": ("string_type", "Input should be a valid string"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
    "integer": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
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
        kind, message = _TYPE_ERRORS[spec.kind]
    else:
        bound, sign = (spec.minimum, ">=") if problem == "minimum" else (spec.maximum, "<=")
        kind, message = (
            ("greater_than_equal" if sign == ">=" else "less_than_equal"),
            f"Input should be {sign} {bound}",
        )
    return {"loc": ["body", name], "msg": message, "type": kind}


def validate(endpoint: Endpoint, body: dict[str, Any]) -> list[dict[str, Any]]:
    """fal's 422 detail items for a body, empty when it is valid; the cross-field checks run last."""
    errors = [_detail(name, problem, spec) for name, problem, spec, _ in problems(endpoint.fields, body)]
    if not errors and endpoint.rule and (broken := endpoint.rule(filled(endpoint.fields, body))):
        errors.append({"loc": ["body", broken[0]], "msg": broken[1], "type": "value_error"})
    return errors


class Invalid(SimError):
    """fal's validation answer: 422 with a list of detail items (fal-queue.md, Errors)."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(422, "validation_error", "; ".join(item["msg"] for item in detail))
        self.detail = detail


def _shape(endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, int, int]:
    """(width, height, seconds) of the video: the aspect ratio at the resolution, the duration."""
    values = filled(endpoint.fields, body)
    width, height = frame(str(values.get("aspect_ratio", "16:9")), str(values.get("resolution", "1080p")))
    return width, height, int(str(values.get("duration", 5)).removesuffix("s"))


def jwk(key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """An OKP/Ed25519 JWK (RFC 8037): `x` is the raw public key, base64url without padding."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
    }


def sign(
    key: Ed25519PrivateKey, *, request_id: str, user_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The four webhook headers (fal-queue.md, Signature verification)."""
    message = "\n".join((request_id, user_id, str(timestamp), hashlib.sha256(body).hexdigest())).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


class Fal:
    """The fal queue under /fal, for the catalogue's fal endpoints."""

    name = "fal"
    prefix = "/fal"

    def __init__(self, sim: ProviderSimulator, endpoints: dict[str, Endpoint] | None = None) -> None:
        self.sim = sim
        self.endpoints = endpoints or ENDPOINTS
        # fal-queue.md, Signature verification 4: the keys fal publishes in its JWKS. A key pair
        # made at start; `forger` never appears in the JWKS (forged-push).
        self.signing_key = Ed25519PrivateKey.generate()
        self._published: list[tuple[str, Ed25519PublicKey]] = [("sim-1", self.signing_key.public_key())]
        self._forger = Ed25519PrivateKey.generate()

    @property
    def key(self) -> str:
        return self.sim.config.fal_key or self.sim.config.api_token

    @property
    def user_id(self) -> str:
        return self.sim.config.fal_user_id

    def rotate_key(self, *, keep_old: bool = False) -> None:
        """Sign with a new key from now on and publish it (with the old one when `keep_old`)."""
        self.signing_key = Ed25519PrivateKey.generate()
        entry = (f"sim-{len(self._published) + 1}", self.signing_key.public_key())
        self._published = [*self._published, entry] if keep_old else [entry]

    def routes(self) -> list[Route]:
        ids = "|".join(
            re.escape(endpoint_id) for endpoint_id in sorted(self.endpoints, key=len, reverse=True)
        )
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

    # -- routes --------------------------------------------------------------------------------

    def jwks(self, request: Request) -> Answer:
        """fal-queue.md, Signature verification 4 (public, no key needed)."""
        return 200, {"keys": [jwk(public, kid) for kid, public in self._published]}, {}

    def submit(self, request: Request) -> Answer:
        """fal-queue.md, Submit."""
        check_bearer(request, self.key, scheme="Key")  # fal-queue.md, Transport: `Key $FAL_KEY`
        endpoint = self.endpoints[request.groups["endpoint"]]
        body = request.json()
        if not isinstance(body, dict):
            raise Invalid(
                [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
            )
        errors = validate(endpoint, body)
        if errors:
            raise Invalid(errors)
        webhook = request.query.get("fal_webhook")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise bad_request("fal_webhook must be an http(s) URL")
        request_id = str(uuid.uuid4())
        job = self.sim.new_job(
            self.name,
            (str(body.get("prompt", "")), *_shape(endpoint, body)),
            {
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
            },
            request_id,
        )
        job.meta["ignored_fields"] = sorted(set(body) - set(endpoint.fields))
        job.meta["endpoint"] = endpoint
        push = (lambda job, kind: self._push(job, webhook, kind)) if webhook else None
        self.sim.run(job, finish=self._finish, push=push)
        urls = self._urls(endpoint.app, request_id)
        answer = {
            "status": "IN_QUEUE",
            "request_id": request_id,
            "gateway_request_id": request_id,
            **urls,
            "queue_position": 0,
        }
        return 200, answer, {}

    def status(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel."""
        check_bearer(request, self.key, scheme="Key")
        job, record = self._job(request)
        logs: list[dict[str, Any]] | None = [] if request.query.get("logs") == "1" else None
        if job.terminal:
            answer: dict[str, Any] = {
                "status": "COMPLETED",
                "logs": logs,
                "metrics": {"inference_time": round((job.finished_at or job.created_at) - job.created_at, 3)},
                "response_url": self._urls(record["app"], job.id)["response_url"],
            }
            if record["error"]:
                answer.update(error=record["error"], error_type=record["error_type"])
            return 200, answer, {}
        if job.state == "running":
            return 200, {"status": "IN_PROGRESS", "logs": logs}, {}
        return 200, {"status": "IN_QUEUE", "queue_position": 0, "logs": logs}, {}

    def result(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel (before completion: 400, the simulator's choice)."""
        check_bearer(request, self.key, scheme="Key")
        job, record = self._job(request)
        if not job.terminal:
            raise SimError(400, "in_progress", "Request is still in progress")
        if record["error"]:
            raise Invalid(self._error_detail(record))
        return 200, self._output(job), {}

    def cancel(self, request: Request) -> Answer:
        """fal-queue.md, Status, result, cancel (the answers are unverified): it ends as an error."""
        check_bearer(request, self.key, scheme="Key")
        job, record = self._job(request)
        if job.terminal:
            return 400, {"status": "ALREADY_COMPLETED"}, {}
        record["cancelled"] = True  # read by _finish, under the engine's lock
        return 202, {"status": "CANCELLATION_REQUESTED"}, {}

    # -- the job's outcome and its pushes -----------------------------------------------------

    def _finish(self, job: Job) -> None:
        record = job.record
        if record["cancelled"]:
            record.update(error="Request was cancelled", error_type=CANCELLED_TYPE)
        elif job.fault.fail:
            record.update(error=FAILURE_MESSAGE, error_type=FAILURE_TYPE)
        record["finished_at"] = job.finished_at

    def _output(self, job: Job) -> dict[str, Any]:
        """fal-queue.md, Status, result, cancel (the shape is inferred from fal's image example)."""
        path = self.sim.video_path(job.id)  # renders on first use, like the first download
        video: dict[str, Any] = {
            "url": self.sim.video_url(job),
            "content_type": "video/mp4",
            "file_name": f"{job.id}.mp4",
            "file_size": path.stat().st_size if path is not None else None,
        }
        return {"video": video, "seed": int(hashlib.sha256(job.id.encode()).hexdigest()[:8], 16)}

    def _error_detail(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"loc": ["body"], "msg": record["error"], "type": record["error_type"]}]

    def _push(self, job: Job, url: str, kind: str) -> None:
        """fal-queue.md, Webhook and Signature verification. No progress pushes; a forged push is
        signed with a key never published, a stale one STALE_BY_S ago."""
        if kind == "progress":
            return
        key = self._forger if kind == "forged" else self.signing_key
        timestamp = int(time.time()) - (STALE_BY_S if kind == "stale" else 0)
        record = self.sim.record(job.id) or {}
        if kind in ("forged", "stale"):  # both claim a success
            video = {
                "url": self.sim.claimed_video_url(job, kind),
                "content_type": "video/mp4",
                "file_name": f"{job.id}.mp4",
            }
            outcome: dict[str, Any] = {"status": "OK", "payload": {"video": video}}
        elif record.get("error"):
            detail = {"detail": self._error_detail(record)}
            outcome = {"status": "ERROR", "error": "Invalid status code: 422", "payload": detail}
        else:
            outcome = {"status": "OK", "payload": self._output(job)}
        raw = json.dumps({"request_id": job.id, "gateway_request_id": job.id, **outcome}).encode()
        headers = sign(key, request_id=job.id, user_id=self.user_id, timestamp=timestamp, body=raw)
        self.sim.deliver(job, url, raw, headers, kind=kind)

    # -- helpers -----------------------------------------------------------------------------

    def _job(self, request: Request) -> tuple[Job, dict[str, Any]]:
        """The job a status/result/cancel path names, under its own app only."""
        job = self.sim.job(request.groups["request_id"])
        if job is None or job.dialect != self.name or job.record["app"] != request.groups["app"]:
            raise SimError(404, "not_found", "Request not found")
        return job, job.record

    def _urls(self, app: str, request_id: str) -> dict[str, str]:
        """fal-queue.md, Submit: the URLs point back at this simulator's /fal prefix."""
        base = f"{self.sim.public_url}{self.prefix}/{app}/requests/{request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}
