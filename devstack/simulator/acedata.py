"""AceDataCloud at the root (contract: shared/providers/acedata-video.md; the retired /sora/*: acedata-sora.md),
the services the catalogue reaches; a video has the service's frame, but 4k renders at 1080p's (~12 s)."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from typing import Any, ClassVar

import httpx

from devstack.simulator import core
from devstack.simulator.core import FLAG, PROMPT, TEXT, URL, URLS, Field, bad_request, frame, one_of, refuse

MAX_BATCH_IDS = 50
_SEEDANCE = "doubao-seedance-"
_DELIVERY = {"callback_url": Field("url", required=True), "async": FLAG}  # the callback mode only
_WANTED = {"boolean": "a boolean", "string": "a string", "url": "an http(s) URL string"}
_WANTED |= {"strings": "a list of strings", "object": "an object"}


def _message(name: str, problem: str, spec: Field, value: Any) -> str:
    """AceData's 400 message for a field (acedata-video.md, "Errors"): it names the field."""
    options = spec.options
    if problem == "missing":
        listed = f" (one of {sorted(options)})" if spec.kind == "string" and options else ""
        return f"{name} is required{listed}"
    if isinstance(options, range):
        wanted = f"an integer in {options.start} to {options.stop - 1}"
    elif options is not None:
        wanted = f"{'an integer in' if spec.kind == 'integer' else 'one of'} {sorted(options)}"
    else:
        wanted = _WANTED.get(spec.kind) or f"a number from {spec.minimum} to {spec.maximum}"
    return f"{name} must be {wanted}, got {value!r}"


def _value(values: dict[str, Any], name: str, spec: Field) -> Any:
    """One field checked by a rule (its spec depends on another field); its value or default."""
    for problem in core.problems({name: spec}, values):
        raise bad_request(_message(*problem))
    return values.get(name, spec.default)


class Sora:
    """acedata-sora.md, "POST /sora/videos": the retired route, its v2 mode only."""

    PRO_ONLY = ("1024x1792", "1792x1024")
    fields: ClassVar[dict[str, Field]] = {
        "prompt": PROMPT,
        "model": one_of("sora-2", "sora-2-pro", required=True),
        "duration": one_of(4, 8, 12, default=4),
        "size": one_of("720x1280", "1280x720", *PRO_ONLY, default="720x1280"),
        "image_urls": URLS,
    }

    def shape(self, values: dict[str, Any]) -> core.Shape:
        version, size = values.get("version"), values["size"]
        # "2.0" is documented; older clients sent the integer 2 (type(): a bool is an int too).
        if not (version == "2.0" or (type(version) is int and version == 2)):
            raise bad_request(f'version must be "2.0" (only the v2 mode is simulated), got {version!r}')
        refuse(size in self.PRO_ONLY and values["model"] == "sora-2", f"size {size} needs model sora-2-pro")
        width, height = map(int, size.split("x"))
        return values["prompt"], width, height, values["duration"]

    def success(self, job: core.Job, video_url: str) -> dict[str, Any]:
        video_id = f"{job.record['request']['model']}:task_{secrets.token_hex(13)}"
        return {"data": [{"id": video_id, "video_url": video_url, "state": "succeeded"}]}


class Veo:
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", "ingredients2video", required=True),
        "model": one_of("veo3", "veo3-fast", "veo31", "veo31-fast", "veo31-fast-ingredients"),
        "prompt": PROMPT,
        "image_urls": URLS,
        "aspect_ratio": one_of("16:9", "9:16", default="16:9"),
        "resolution": one_of("4k", "1080p", "gif"),  # lower case; absent = 720p
        "translation": FLAG,
    }

    def shape(self, values: dict[str, Any]) -> core.Shape:
        action, model, images = values["action"], values.get("model"), values.get("image_urls", [])
        refuse(action == "text2video" and images, "image_urls needs action image2video or ingredients2video")
        if action != "text2video" and not 1 <= len(images) <= 3:
            raise bad_request(f"image_urls takes 1 to 3 images for action {action}, got {len(images)}")
        if model == "veo31-fast-ingredients" and action == "text2video":
            raise bad_request("model veo31-fast-ingredients needs images (action ingredients2video)")
        resolution = values.get("resolution")
        refuse(resolution == "4k" and model != "veo31", "resolution 4k is offered by model veo31 only")
        # A gif is served as an MP4 here (the simulator serves MP4 only); Veo takes no duration: 8 s.
        width, height = frame(values["aspect_ratio"], "1080p" if resolution in ("1080p", "4k") else "720p")
        return values["prompt"], width, height, 8

    def success(self, job: core.Job, video_url: str) -> dict[str, Any]:
        clock = "%Y-%m-%d %H:%M:%S"
        times = {"created_at": time.strftime(clock, time.localtime(job.created_at))}
        times["complete_at"] = time.strftime(clock, time.localtime(job.finished_at))
        return {"data": [{"id": uuid.uuid4().hex, "video_url": video_url, **times, "state": "succeeded"}]}


class Kling:
    # kling-video-o1 is the API reference's spelling of kling-o1.
    MODELS = ("kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo")
    MODELS += ("kling-v2-6", "kling-v3", "kling-v3-omni", "kling-o1", "kling-video-o1")
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", required=True),
        "model": one_of(*MODELS, default="kling-v1"),
        "prompt": PROMPT,
        "negative_prompt": TEXT,
        "start_image_url": URL,
        "end_image_url": URL,
        "aspect_ratio": one_of("16:9", "9:16", "1:1", default="16:9"),
        "mode": one_of("std", "pro", "4k", default="std"),
        "cfg_scale": Field("number", minimum=0, maximum=1),
        "generate_audio": FLAG,
        "camera_control": Field("object"),
    }

    def shape(self, values: dict[str, Any]) -> core.Shape:
        action, start, end = values["action"], values.get("start_image_url"), values.get("end_image_url")
        refuse(action == "image2video" and not start, "action image2video needs start_image_url")
        if action == "text2video" and (start or end):
            raise bad_request("start_image_url and end_image_url need action image2video")
        durations = range(3, 16) if values["model"].startswith("kling-v3") else (5, 10)
        duration = _value(values, "duration", Field("integer", durations, 5))
        refuse(end and duration != 5, "duration must be 5 when end_image_url is given")
        width, height = frame(values["aspect_ratio"], "720p" if values["mode"] == "std" else "1080p")
        return values["prompt"], width, height, duration

    def success(self, job: core.Job, video_url: str) -> dict[str, Any]:
        video = {"video_id": str(uuid.uuid4()), "video_url": video_url, "duration": f"{job.seconds:.1f}"}
        return {**video, "state": "succeed"}


class Seedance:
    # The model's duration range, by the model name's version.
    DURATIONS: ClassVar[dict[str, range]] = {"1-0": range(2, 13), "1-5": range(4, 13)}
    DURATIONS["2-0"] = DURATIONS["2-5"] = range(4, 16)
    MODELS = ("1-0-pro-250528", "1-0-pro-fast-251015", "1-5-pro-251215", "1-0-lite-t2v-250428")
    MODELS += ("1-0-lite-i2v-250428", "2-0-260128", "2-0-fast-260128", "2-0-mini-260615", "2-5-260628")
    fields: ClassVar[dict[str, Field]] = {
        "model": one_of(*(_SEEDANCE + name for name in MODELS), required=True),
        "ratio": one_of("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive", default="adaptive"),
        "resolution": one_of("480p", "720p", "1080p", "4k", default="720p"),  # lower case
        "generate_audio": FLAG,
        "execution_expires_after": Field("integer", range(3600, 259201)),
    }

    def shape(self, values: dict[str, Any]) -> core.Shape:
        model = values["model"]
        texts, images = self._content(values)
        refuse("lite-t2v" in model and images, f"model {model} takes no image; use its i2v twin")
        refuse("lite-i2v" in model and not images, f"model {model} needs an image_url item in content")
        refuse(not texts and not images, "content needs a text item or an image_url item")
        allowed = self.DURATIONS[model.removeprefix(_SEEDANCE)[:3]]
        duration = _value(values, "duration", one_of(-1, *allowed, default=5))
        duration = 5 if duration == -1 else duration  # -1: the model picks; 5 s here
        resolution = values["resolution"]
        width, height = frame(values["ratio"], "1080p" if resolution == "4k" else resolution)
        return (texts[0] if texts else ""), width, height, duration

    @staticmethod
    def _content(values: dict[str, Any]) -> tuple[list[str], int]:
        """The text prompts and the count of image items of `content`."""
        content = values.get("content")
        if not (isinstance(content, list) and content and all(isinstance(i, dict) for i in content)):
            raise bad_request("content is required and must be a non-empty list of objects")
        texts, count = [], 0
        for item in content:
            if (kind := item.get("type")) == "text":
                texts.append(_value({"prompt": item.get("text")}, "prompt", PROMPT))
            elif kind == "image_url":
                # `{"type": "image_url", "image_url": {"url": ...}}`: a bare string is refused (seedance's guide).
                holder = item.get(kind)
                if not isinstance(holder, dict) or _value(holder, "url", URL) is None:
                    raise bad_request(f'content[].{kind} must be an object {{"url": "https://..."}}')
                _value(item, "role", one_of("first_frame", "last_frame", "reference_image"))
                count += 1
            else:
                raise bad_request(f"content[].type must be text or image_url, got {kind!r}")
        return texts, count

    def success(self, job: core.Job, video_url: str) -> dict[str, Any]:
        request = job.record["request"]
        tokens = job.width * job.height * 24 * job.seconds // 1024  # ByteDance's video token count
        video = {"id": f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}", "status": "succeeded"}
        video |= {"content": {"video_url": video_url}, "model": request["model"], "duration": job.seconds}
        video |= {"ratio": request.get("ratio", "adaptive"), "resolution": request.get("resolution", "720p")}
        return {"data": [video | {"usage": {"completion_tokens": tokens, "total_tokens": tokens}}]}


class Wan:
    _SIZE = re.compile(r"^(?P<width>[1-9][0-9]{2,3})\*(?P<height>[1-9][0-9]{2,3})$")
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", default="text2video"),
        "model": one_of("wan2.6-t2v", "wan2.6-i2v", "wan2.6-i2v-flash", "wan2.6-r2v", required=True),
        "prompt": PROMPT,
        "image_url": URL,
        "reference_video_urls": URLS,
        "audio_url": URL,
        "negative_prompt": TEXT,
        "duration": one_of(5, 10, 15, default=5),
        "resolution": one_of("480P", "720P", "1080P"),  # upper case
        "shot_type": one_of("single", "multi"),
        "audio": FLAG,
        "prompt_extend": FLAG,
    }

    def shape(self, values: dict[str, Any]) -> core.Shape:
        action, model, image = values["action"], values["model"], values.get("image_url")
        # Wan's guide: text2video takes only wan2.6-t2v, image2video only the image models.
        if (action == "text2video") != (model == "wan2.6-t2v"):
            raise bad_request(f"model {model} does not do action {action}")
        refuse(model in ("wan2.6-i2v", "wan2.6-i2v-flash") and not image, f"model {model} needs image_url")
        refuse(action == "text2video" and image, "image_url needs action image2video")
        if (size := values.get("size")) is None:  # the tier decides (an image's aspect is not read: 16:9)
            width, height = frame("16:9", str(values.get("resolution") or "720P").lower())
            return values["prompt"], width, height, values["duration"]
        match = self._SIZE.match(size) if isinstance(size, str) else None
        refuse(match is None, f"size must be WIDTH*HEIGHT (e.g. 1280*720), got {size!r}")
        width, height = int(match["width"]), int(match["height"])
        if width % 2 or height % 2 or max(width, height) > 1920:
            raise bad_request(f"size must have even sides of at most 1920, got {size!r}")
        return values["prompt"], width, height, values["duration"]

    def success(self, job: core.Job, video_url: str) -> dict[str, Any]:
        return {"video_url": video_url, "state": "completed"}


SERVICES: dict[str, Any] = dict(sora=Sora(), veo=Veo(), kling=Kling(), seedance=Seedance(), wan=Wan())


class AceData:
    name, prefix = "acedata", ""

    def __init__(self, sim: core.ProviderSimulator) -> None:
        self.sim = sim
        service = "|".join(map(re.escape, SERVICES))
        self.routes = [("POST", rf"/(?P<svc>{service})/videos", self.create)]
        self.routes.append(("POST", rf"/(?P<svc>{service})/tasks", self.tasks))

    def error_body(self, error: core.SimError) -> dict[str, Any]:
        """acedata-video.md, "Errors"."""
        failure = {"code": error.code, "message": error.message}
        return {"success": False, "error": failure, "trace_id": str(uuid.uuid4())}

    def _body(self, request: core.Request) -> dict[str, Any]:
        """acedata-video.md, "Transport": `Authorization: Bearer <token>`; none at all is a 400 no_token."""
        if request.headers.get("authorization", "").strip().lower() in ("", "bearer"):
            raise core.SimError(400, "no_token", "no token provided in the Authorization header")
        request.check_bearer(self.sim.config.api_token)
        return request.json_object()

    def create(self, request: core.Request) -> core.Answer:
        """acedata-video.md, "POST /<svc>/videos (create)": the service's fields, then its rules."""
        body, service = self._body(request), SERVICES[request.groups["svc"]]
        for problem in core.problems(service.fields | _DELIVERY, body):
            raise bad_request(_message(*problem))
        shape = service.shape(core.filled(service.fields, body))
        now, task_id = time.time(), str(uuid.uuid4())
        record = {"id": task_id, "created_at": now, "started_at": now, "trace_id": str(uuid.uuid4())}
        record |= {"type": "videos", "request": copy.deepcopy(body)}
        job = self.sim.new_job(self.name, shape, record, task_id)
        job.meta["service"] = request.groups["svc"]
        self.sim.run(job, finish=self._finish, push=self._push)
        return 200, {"success": True, "task_id": job.id}, {}

    def _finish(self, job: core.Job) -> None:
        if job.fault.fail:
            outcome = {"success": False, "error": {"code": "api_error", "message": core.FAILURE_MESSAGE}}
        else:
            outcome = {"success": True, **SERVICES[job.meta["service"]].success(job, self.sim.video_url(job))}
        job.record["response"] = {"task_id": job.id, "trace_id": job.record["trace_id"], **outcome}
        job.record["finished_at"] = job.finished_at

    def _push(self, job: core.Job, kind: str) -> None:
        """acedata-video.md, "The callback": the result, unsigned (forged = a wrong per-task token)."""
        record, url = self.sim.record(job.id) or {}, job.record["request"]["callback_url"]
        response = record.get("response") or {"success": True, "task_id": job.id}
        if kind in ("forged", "stale"):
            url = str(httpx.URL(url).copy_set_param("token", "forged-" + secrets.token_hex(8)))
        self.sim.deliver(job, url, json.dumps(response).encode(), {}, kind=kind)

    def tasks(self, request: core.Request) -> core.Answer:
        """acedata-video.md, "POST /<svc>/tasks (lookup)": retrieve_batch, the lookup the relay makes."""
        body, service = self._body(request), request.groups["svc"]
        _value(body, "action", one_of("retrieve_batch", required=True))  # the only lookup simulated
        ids = _value(body, "ids", Field("strings", required=True))
        refuse(len(ids) > MAX_BATCH_IDS, f"ids accepts at most {MAX_BATCH_IDS} task ids, got {len(ids)}")
        # Unknown ids, and another service's (inferred: upstream they live per service), are left out.
        jobs = (self.sim.job(task_id, self.name) for task_id in ids)
        items = [self.sim.record(job.id) for job in jobs if job and job.meta["service"] == service]
        return 200, {"items": items, "count": len(items)}, {}
