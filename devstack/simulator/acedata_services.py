"""AceDataCloud's video services: each one's create fields, rules across them, video and result body.

Contract: shared/providers/acedata-video.md, "Request fields per service" and "Callback and result
body per service"; Sora: acedata-sora.md, "POST /sora/videos". A video has the service's frame,
except that 2K and 4k render at 1080p's (a 4k clip takes ~12 s to encode here). Where the contract
records no success word (hailuo, minimax, happyhorse), `succeeded` stands in (unverified).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any, ClassVar

from devstack.simulator import schema
from devstack.simulator.core import Job, Shape, SimError, bad_request, refuse
from devstack.simulator.schema import FLAG, PROMPT, TEXT, URL, URLS, Field, frame, one_of

_ULID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DELIVERY = {"callback_url": URL, "async": FLAG}
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


def _check(values: dict[str, Any], fields: dict[str, Field]) -> None:
    """Refuse the first problem of `values` against `fields` with AceData's 400."""
    for problem in schema.problems(fields, values):
        raise bad_request(_message(*problem))


def _value(values: dict[str, Any], name: str, spec: Field) -> Any:
    """One field checked by a rule (its spec depends on another field); its value or default."""
    _check(values, {name: spec})
    return values.get(name, spec.default)


class Service:
    """One AceData video service: `fields` are checked first, then `shape` applies the rules."""

    name: ClassVar[str]
    fields: ClassVar[dict[str, Field]]
    not_simulated: ClassVar[frozenset[str]] = frozenset()  # actions on a video made earlier

    def validate(self, body: dict[str, Any]) -> Shape:
        _check(body, self.fields)
        values = schema.filled(self.fields, body)
        if values.get("action") in self.not_simulated:  # the simulator keeps no videos
            message = f"{self.name} action {values['action']} is not simulated"
            raise SimError(400, "api_not_implemented", message)
        return self.shape(values)

    def shape(self, values: dict[str, Any]) -> Shape:
        raise NotImplementedError

    @staticmethod
    def delivery(body: dict[str, Any]) -> tuple[str | None, bool]:
        """`callback_url` and `async`, which every service takes (acedata-video.md, "POST /<svc>/videos")."""
        _check(body, _DELIVERY)
        return body.get("callback_url"), bool(body.get("async"))

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return _data(id=str(uuid.uuid4()), video_url=video_url, state="succeeded")


class Sora(Service):
    """acedata-sora.md, "POST /sora/videos": the v2 mode only."""

    name = "sora"
    PRO_ONLY_SIZES = frozenset({"1024x1792", "1792x1024"})
    fields: ClassVar[dict[str, Field]] = {
        "prompt": PROMPT,
        "model": one_of("sora-2", "sora-2-pro", required=True),
        "duration": one_of(4, 8, 12, default=4),
        "size": one_of("720x1280", "1280x720", *PRO_ONLY_SIZES, default="720x1280"),
        "image_urls": URLS,
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        version = values.get("version")
        # "2.0" is the documented value; older clients sent the integer 2. bool is an int subclass.
        if not (version == "2.0" or (type(version) is int and version == 2)):
            raise bad_request(f'version must be "2.0" (only the v2 mode is simulated), got {version!r}')
        size = values["size"]
        if size in self.PRO_ONLY_SIZES and values["model"] != "sora-2-pro":
            raise bad_request(f"size {size} requires model sora-2-pro")
        width, height = (int(part) for part in size.split("x"))
        return values["prompt"], width, height, values["duration"]

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        suffix = "".join(secrets.choice(_ULID_ALPHABET) for _ in range(26))
        task_id = f"{job.record['request']['model']}:task_{suffix}"
        return _data(id=task_id, video_url=video_url, state="succeeded")


class Veo(Service):
    name = "veo"
    not_simulated = frozenset({"get1080p"})
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", "ingredients2video", "get1080p", required=True),
        "model": one_of("veo3", "veo3-fast", "veo31", "veo31-fast", "veo31-fast-ingredients"),
        "prompt": PROMPT,
        "image_urls": URLS,
        "aspect_ratio": one_of("16:9", "9:16", default="16:9"),
        "resolution": one_of("4k", "1080p", "gif"),  # lower case; absent = 720p
        "translation": FLAG,
    }

    def shape(self, values: dict[str, Any]) -> Shape:
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

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        created, completed = _clock(job.created_at), _clock(job.finished_at)
        times = {"created_at": created, "complete_at": completed}
        return _data(id=uuid.uuid4().hex, video_url=video_url, **times, state="succeeded")


class Kling(Service):
    name = "kling"
    not_simulated = frozenset({"extend"})
    # kling-video-o1 is the API reference's spelling of kling-o1.
    MODELS = ("kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo")
    MODELS += ("kling-v2-6", "kling-v3", "kling-v3-omni", "kling-o1", "kling-video-o1")
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", "extend", required=True),
        "model": one_of(*MODELS, default="kling-v1"),
        "prompt": PROMPT,
        "negative_prompt": TEXT,
        "start_image_url": URL,
        "end_image_url": URL,
        "aspect_ratio": one_of("16:9", "9:16", "1:1", default="16:9"),
        "mode": one_of("std", "pro", "4k", default="std"),
        "cfg_scale": schema.number(0, 1),
        "generate_audio": FLAG,
        "camera_control": Field("object"),
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        action, start, end = values["action"], values.get("start_image_url"), values.get("end_image_url")
        images = values.get("image_list")
        if images is not None and not (isinstance(images, list) and all(isinstance(i, dict) for i in images)):
            raise bad_request("image_list must be a list of objects")
        for item in images or ():
            _value(item, "image_url", URL)
        if action == "image2video" and not (start or images):
            raise bad_request("action image2video needs start_image_url or image_list")
        if action == "text2video" and (start or end or images):
            raise bad_request("start_image_url, end_image_url and image_list need action image2video")
        durations = range(3, 16) if values["model"].startswith("kling-v3") else (5, 10)
        duration = _value(values, "duration", Field("integer", durations, 5))
        refuse(end and duration != 5, "duration must be 5 when end_image_url is given")
        width, height = frame(values["aspect_ratio"], "720p" if values["mode"] == "std" else "1080p")
        return values["prompt"], width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        video = {"video_id": str(uuid.uuid4()), "video_url": video_url, "duration": f"{job.seconds:.1f}"}
        return {**video, "state": "succeed"}


class Luma(Service):
    name = "luma"
    not_simulated = frozenset({"extend"})
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("generate", "extend", default="generate"),
        "prompt": PROMPT,
        "start_image_url": URL,
        "end_image_url": URL,
        "aspect_ratio": one_of("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21", default="16:9"),
        "loop": FLAG,
        "enhancement": FLAG,
        "timeout": Field("integer", range(1, 3601), 300),
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        return values["prompt"], *frame(values["aspect_ratio"], "720p"), 5  # no duration: 5 s (inferred)

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        # The thumbnail is not served: a reader must take video_url, not any `*_url`.
        size = {"video_width": job.width, "video_height": job.height}
        thumbnail = {"thumbnail_url": video_url.removesuffix(".mp4") + ".jpg"}
        thumbnail |= {"thumbnail_width": job.width, "thumbnail_height": job.height}
        video = {"video_id": str(uuid.uuid4()), "prompt": job.prompt, "video_url": video_url}
        return {**video, **size, **thumbnail, "state": "completed"}


class Hailuo(Service):
    name = "hailuo"
    IMAGE_MODELS = frozenset({"minimax-i2v", "minimax-i2v-director"})
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("generate", required=True),
        "model": one_of("minimax-t2v", *IMAGE_MODELS, default="minimax-t2v"),
        "first_image_url": URL,
        "prompt": PROMPT,
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        if (values["model"] in self.IMAGE_MODELS) != bool(values.get("first_image_url")):
            raise bad_request(f"first_image_url is required by {sorted(self.IMAGE_MODELS)} and only by them")
        return values["prompt"], 1280, 720, 6  # no shape or duration fields (6 s, 720p: inferred)

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        request = job.record["request"]
        model, image = request.get("model", "minimax-t2v"), request.get("first_image_url")
        video = {"id": str(uuid.uuid4()), "model": model, "prompt": job.prompt, "status": "succeeded"}
        return _data(**video, video_url=video_url, first_image_url=image)


class Minimax(Service):
    name = "minimax"
    MEDIA = frozenset({"image_url", "video_url", "audio_url"})
    ROLES = ("first_frame", "last_frame", "reference_image", "reference_video", "reference_audio")
    fields: ClassVar[dict[str, Field]] = {
        "model": one_of("MiniMax-H3", required=True),
        "resolution": one_of("768P", "2K", required=True),  # upper case
        "duration": Field("integer", range(4, 16), required=True),
        "ratio": one_of("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16", default="adaptive"),
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        for absent in ("action", "prompt"):
            if absent in values:
                raise bad_request(f"{absent} is not a minimax field (the prompt is the text item of content)")
        texts, _ = _content(values, self.MEDIA, one_of(*self.ROLES, required=True))
        refuse(len(texts) != 1, f"content needs exactly one text item, got {len(texts)}")
        width, height = frame(values["ratio"], "768p" if values["resolution"] == "768P" else "1080p")
        return texts[0], width, height, values["duration"]

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return _data(id=str(uuid.uuid4()), status="succeeded", video_url=video_url)


_SEEDANCE = "doubao-seedance-"


class Seedance(Service):
    name = "seedance"
    # The model's duration range, by the model name's version.
    DURATIONS: ClassVar[dict[str, range]] = {"1-0": range(2, 13), "1-5": range(4, 13), "2-0": range(4, 16)}
    DURATIONS["2-5"] = range(4, 16)
    MODELS = ("1-0-pro-250528", "1-0-pro-fast-251015", "1-5-pro-251215", "1-0-lite-t2v-250428")
    MODELS += ("1-0-lite-i2v-250428", "2-0-260128", "2-0-fast-260128", "2-0-mini-260615", "2-5-260628")
    fields: ClassVar[dict[str, Field]] = {
        "model": one_of(*(_SEEDANCE + name for name in MODELS), required=True),
        "frames": Field("integer", range(29, 362)),
        "ratio": one_of("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive", default="adaptive"),
        "resolution": one_of("480p", "720p", "1080p", "4k", default="720p"),  # lower case
        "generate_audio": FLAG,
        "execution_expires_after": Field("integer", range(3600, 259201)),
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        model = values["model"]
        roles = one_of("first_frame", "last_frame", "reference_image")
        texts, images = _content(values, {"image_url"}, roles)
        refuse("lite-t2v" in model and images, f"model {model} takes no image; use its i2v twin")
        refuse("lite-i2v" in model and not images, f"model {model} needs an image_url item in content")
        refuse(not texts and not images, "content needs a text item or an image_url item")
        refuse("duration" in values and "frames" in values, "send duration or frames, not both")
        frames = values.get("frames")
        refuse(frames is not None and (frames - 25) % 4, f"frames must be 25 + 4n, got {frames}")
        allowed = self.DURATIONS[model.removeprefix(_SEEDANCE)[:3]]
        duration = _value(values, "duration", one_of(-1, *allowed, default=5))
        if frames is not None:
            duration = max(1, round(frames / 24))
        elif duration == -1:
            duration = 5  # automatic: the model picks; 5 s here
        resolution = values["resolution"]
        width, height = frame(values["ratio"], "1080p" if resolution == "4k" else resolution)
        return (texts[0] if texts else ""), width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        request = job.record["request"]
        tokens = job.width * job.height * 24 * job.seconds // 1024  # ByteDance's video token count
        return _data(
            id="cgt-" + time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3),
            status="succeeded",
            content={"video_url": video_url},
            model=request["model"],
            ratio=request.get("ratio", "adaptive"),
            resolution=request.get("resolution", "720p"),
            duration=job.seconds,
            usage={"completion_tokens": tokens, "total_tokens": tokens},
        )


class Wan(Service):
    name = "wan"
    IMAGE_MODELS = frozenset({"wan2.6-i2v", "wan2.6-i2v-flash", "wan2.6-r2v"})
    _SIZE = re.compile(r"^(?P<width>[1-9][0-9]{2,3})\*(?P<height>[1-9][0-9]{2,3})$")
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of("text2video", "image2video", default="text2video"),
        "model": one_of("wan2.6-t2v", *IMAGE_MODELS, required=True),
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

    def shape(self, values: dict[str, Any]) -> Shape:
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

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return {"video_url": video_url, "state": "completed"}


# HappyHorse: each action's model suffix.
_SUFFIX = {
    "generate": "t2v",
    "image_to_video": "i2v",
    "reference_to_video": "r2v",
    "video_edit": "video-edit",
}


class HappyHorse(Service):
    name = "happyhorse"
    MODELS = tuple(f"happyhorse-{v}-{kind}" for v in ("1.0", "1.1") for kind in ("t2v", "i2v", "r2v"))
    fields: ClassVar[dict[str, Field]] = {
        "action": one_of(*_SUFFIX, default="generate"),
        "model": one_of(*MODELS, "happyhorse-1.0-video-edit", default="happyhorse-1.1-t2v"),
        "prompt": TEXT,  # optional for image_to_video only
        "image_url": URL,
        "image_urls": URLS,
        "video_url": URL,
        "duration": Field("integer", range(3, 16), 5),
        "ratio": one_of("16:9", "9:16", "1:1", "4:3", "3:4", default="16:9"),
        "resolution": one_of("720P", "1080P", default="1080P"),  # upper case
    }

    def shape(self, values: dict[str, Any]) -> Shape:
        action, model, references = values["action"], values["model"], values.get("image_urls", [])
        refuse(not model.endswith("-" + _SUFFIX[action]), f"model {model} does not do action {action}")
        prompt = _value(values, "prompt", PROMPT) if action != "image_to_video" else values.get("prompt", "")
        if action == "image_to_video" and not values.get("image_url"):
            raise bad_request("action image_to_video needs image_url")
        if action == "reference_to_video" and not 1 <= len(references) <= 9:
            raise bad_request(f"image_urls takes 1 to 9 images for reference_to_video, got {len(references)}")
        refuse(action == "video_edit" and not values.get("video_url"), "action video_edit needs video_url")
        return prompt, *frame(values["ratio"], values["resolution"]), values["duration"]


def _data(**video: Any) -> dict[str, Any]:
    return {"data": [video]}


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _content(values: dict[str, Any], media: set[str] | frozenset[str], role: Field) -> tuple[list[str], int]:
    """The text prompts and the count of media items of a `content` list (minimax, seedance)."""
    content = values.get("content")
    if not isinstance(content, list) or not content or not all(isinstance(item, dict) for item in content):
        raise bad_request("content is required and must be a non-empty list of objects")
    texts, count = [], 0
    for item in content:
        kind = item.get("type")
        if kind == "text":
            texts.append(_value({"prompt": item.get("text")}, "prompt", PROMPT))
        elif kind in media:
            # `{"type": "image_url", "image_url": {"url": ...}}`: a bare string is refused (seedance's guide).
            holder = item.get(kind)
            if not isinstance(holder, dict) or _value(holder, "url", URL) is None:
                raise bad_request(f'content[].{kind} must be an object {{"url": "https://..."}}')
            _value(item, "role", role)
            count += 1
        else:
            raise bad_request(f"content[].type must be text or one of {sorted(media)}, got {kind!r}")
    return texts, count


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (Sora(), Veo(), Kling(), Luma(), Hailuo(), Minimax(), Seedance(), Wan(), HappyHorse())
}
