"""AceDataCloud's video services as the simulator sees them: one class per service, each with the
checks of its create body and the shape of its result body.

Contract: shared/providers/acedata-video.md ("Request fields per service", "Callback and result
body per service"); the retired Sora service follows shared/providers/acedata-sora.md. The
dialect (acedata.py) routes `/<svc>/videos` to the service named in the path.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any, ClassVar

from devstack.simulator.core import Job, SimError, bad_request

_ULID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


class Service:
    """One AceData video service: its create-body check and its result body."""

    name: ClassVar[str]

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        """Check a create body; returns (prompt, width, height, seconds) of the video to render."""
        raise NotImplementedError

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        raise NotImplementedError


class Sora(Service):
    """The retired `/sora/videos` v2 mode (acedata-sora.md)."""

    name = "sora"
    MODELS = frozenset({"sora-2", "sora-2-pro"})
    DURATIONS = frozenset({4, 8, 12})
    SIZES = frozenset({"720x1280", "1280x720", "1024x1792", "1792x1024"})
    PRO_ONLY_SIZES = frozenset({"1024x1792", "1792x1024"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        prompt = _prompt(body.get("prompt"))
        model = body.get("model")
        if model not in self.MODELS:
            raise bad_request(f"model must be one of {sorted(self.MODELS)}, got {model!r}")
        version = body.get("version")
        # "2.0" is the documented value; older clients sent the integer 2. bool is an int subclass.
        if not (version == "2.0" or (type(version) is int and version == 2)):
            raise bad_request(f'version must be "2.0" (only the v2 mode is simulated), got {version!r}')
        duration = body.get("duration", 4)
        if type(duration) is not int or duration not in self.DURATIONS:
            raise bad_request(f"duration must be one of {sorted(self.DURATIONS)}, got {duration!r}")
        size = body.get("size", "720x1280")
        if size not in self.SIZES:
            raise bad_request(f"size must be one of {sorted(self.SIZES)}, got {size!r}")
        if size in self.PRO_ONLY_SIZES and model != "sora-2-pro":
            raise bad_request(f"size {size} requires model sora-2-pro")
        _string_list(body, "image_urls")
        width, height = (int(part) for part in size.split("x"))
        return prompt, width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        model = job.record["request"]["model"]
        suffix = "".join(secrets.choice(_ULID_ALPHABET) for _ in range(26))
        return {"data": [{"id": f"{model}:task_{suffix}", "video_url": video_url, "state": "succeeded"}]}


# -- The live services (acedata-video.md, "Request fields per service" and "Callback and result
# body per service"). A rendered video has the frame the service would deliver for the asked
# aspect ratio and resolution, except that 2K and 4k render at 1080p's frame: a 4k clip takes
# ~12 s to encode here. Where the contract records no success word (hailuo, minimax,
# happyhorse), `succeeded` stands in (unverified).


class Veo(Service):
    name = "veo"
    MODELS = frozenset({"veo3", "veo3-fast", "veo31", "veo31-fast", "veo31-fast-ingredients"})
    ACTIONS = frozenset({"text2video", "image2video", "ingredients2video", "get1080p"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        action = _enum(body, "action", self.ACTIONS, required=True)
        if action == "get1080p":
            raise _not_simulated("veo", action)
        model = _enum(body, "model", self.MODELS)
        prompt = _prompt(body.get("prompt"))
        images = _string_list(body, "image_urls")
        if action == "text2video" and images:
            raise bad_request("image_urls needs action image2video or ingredients2video")
        if action != "text2video" and not 1 <= len(images) <= 3:
            raise bad_request(f"image_urls takes 1 to 3 images for action {action}, got {len(images)}")
        if model == "veo31-fast-ingredients" and action == "text2video":
            raise bad_request("model veo31-fast-ingredients needs images (action ingredients2video)")
        aspect = _enum(body, "aspect_ratio", {"16:9", "9:16"}, default="16:9")
        resolution = _enum(body, "resolution", {"4k", "1080p", "gif"})  # lower case; absent = 720p
        if resolution == "4k" and model != "veo31":
            raise bad_request("resolution 4k is offered by model veo31 only")
        _flag(body, "translation")
        # A gif is served as an MP4 here (the simulator serves MP4 only).
        width, height = _frame(aspect, "1080p" if resolution in ("1080p", "4k") else "720p")
        return prompt, width, height, 8  # Veo takes no duration: 8 s

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        video = {
            "id": uuid.uuid4().hex,
            "video_url": video_url,
            "created_at": _clock(job.created_at),
            "complete_at": _clock(job.finished_at),
            "state": "succeeded",
        }
        return {"data": [video]}


class Kling(Service):
    name = "kling"
    MODELS = frozenset(
        {
            "kling-v1",
            "kling-v1-6",
            "kling-v2-master",
            "kling-v2-1-master",
            "kling-v2-5-turbo",
            "kling-v2-6",
            "kling-v3",
            "kling-v3-omni",
            "kling-o1",
            "kling-video-o1",  # the API reference's spelling of kling-o1
        }
    )

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        action = _enum(body, "action", {"text2video", "image2video", "extend"}, required=True)
        if action == "extend":
            raise _not_simulated("kling", action)
        model = _enum(body, "model", self.MODELS, default="kling-v1")
        prompt = _prompt(body.get("prompt"))
        _text(body, "negative_prompt")
        start, end = _url(body, "start_image_url"), _url(body, "end_image_url")
        image_list = _object_list(body, "image_list", "image_url")
        if action == "image2video" and not (start or image_list):
            raise bad_request("action image2video needs start_image_url or image_list")
        if action == "text2video" and (start or end or image_list):
            raise bad_request("start_image_url, end_image_url and image_list need action image2video")
        if str(model).startswith("kling-v3"):
            duration = _integer(body, "duration", range(3, 16), default=5)
        else:
            duration = _integer(body, "duration", (5, 10), default=5)
        if end and duration != 5:
            raise bad_request("duration must be 5 when end_image_url is given")
        aspect = _enum(body, "aspect_ratio", {"16:9", "9:16", "1:1"}, default="16:9")
        mode = _enum(body, "mode", {"std", "pro", "4k"}, default="std")
        _number(body, "cfg_scale", 0, 1)
        _flag(body, "generate_audio")
        if body.get("camera_control") is not None and not isinstance(body["camera_control"], dict):
            raise bad_request("camera_control must be an object")
        width, height = _frame(aspect, "720p" if mode == "std" else "1080p")
        return prompt, width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return {
            "video_id": str(uuid.uuid4()),
            "video_url": video_url,
            "duration": f"{job.seconds:.1f}",
            "state": "succeed",
        }


class Luma(Service):
    name = "luma"
    ASPECTS = frozenset({"1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        action = _enum(body, "action", {"generate", "extend"}, default="generate")
        if action == "extend":
            raise _not_simulated("luma", action)
        prompt = _prompt(body.get("prompt"))
        _url(body, "start_image_url")
        _url(body, "end_image_url")
        aspect = _enum(body, "aspect_ratio", self.ASPECTS, default="16:9")
        _flag(body, "loop")
        _flag(body, "enhancement")
        _integer(body, "timeout", range(1, 3601), default=300)
        width, height = _frame(aspect, "720p")
        return prompt, width, height, 5  # Luma takes no duration (5 s: inferred)

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        # The thumbnail is not served: a reader must take video_url, not any `*_url`.
        return {
            "video_id": str(uuid.uuid4()),
            "prompt": job.prompt,
            "video_url": video_url,
            "video_width": job.width,
            "video_height": job.height,
            "thumbnail_url": video_url.removesuffix(".mp4") + ".jpg",
            "thumbnail_width": job.width,
            "thumbnail_height": job.height,
            "state": "completed",
        }


class Hailuo(Service):
    name = "hailuo"
    IMAGE_MODELS = frozenset({"minimax-i2v", "minimax-i2v-director"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        _enum(body, "action", {"generate"}, required=True)
        model = _enum(body, "model", {"minimax-t2v", *self.IMAGE_MODELS}, default="minimax-t2v")
        image = _url(body, "first_image_url")
        if (model in self.IMAGE_MODELS) != bool(image):
            raise bad_request(f"first_image_url is required by {sorted(self.IMAGE_MODELS)} and only by them")
        prompt = _prompt(body.get("prompt"))
        return prompt, 1280, 720, 6  # no shape or duration fields (6 s, 720p: inferred)

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        request = job.record["request"]
        video = {
            "id": str(uuid.uuid4()),
            "model": request.get("model", "minimax-t2v"),
            "prompt": job.prompt,
            "status": "succeeded",
            "video_url": video_url,
            "first_image_url": request.get("first_image_url"),
        }
        return {"data": [video]}


class Minimax(Service):
    name = "minimax"
    RATIOS = frozenset({"adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16"})
    MEDIA = frozenset({"image_url", "video_url", "audio_url"})
    ROLES = frozenset({"first_frame", "last_frame", "reference_image", "reference_video", "reference_audio"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        for absent in ("action", "prompt"):
            if absent in body:
                raise bad_request(f"{absent} is not a minimax field (the prompt is the text item of content)")
        _enum(body, "model", {"MiniMax-H3"}, required=True)
        texts = []
        for item in _content_items(body):
            kind = item.get("type")
            if kind == "text":
                texts.append(_prompt(item.get("text")))
            elif kind in self.MEDIA:
                _media_url(item, kind)
                _enum(item, "role", self.ROLES, required=True)
            else:
                raise bad_request(f"content[].type must be text or one of {sorted(self.MEDIA)}, got {kind!r}")
        if len(texts) != 1:
            raise bad_request(f"content needs exactly one text item, got {len(texts)}")
        resolution = _enum(body, "resolution", {"768P", "2K"}, required=True)  # upper case
        duration = _integer(body, "duration", range(4, 16), required=True)
        ratio = _enum(body, "ratio", self.RATIOS, default="adaptive")
        width, height = _frame(ratio, "768p" if resolution == "768P" else "1080p")
        return texts[0], width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return {"data": [{"id": str(uuid.uuid4()), "status": "succeeded", "video_url": video_url}]}


_SEEDANCE = "doubao-seedance-"


class Seedance(Service):
    name = "seedance"
    PREFIX = _SEEDANCE
    # The model's duration range, by the model name's version.
    DURATIONS: ClassVar[dict[str, range]] = {
        "1-0": range(2, 13),
        "1-5": range(4, 13),
        "2-0": range(4, 16),
        "2-5": range(4, 16),
    }
    MODELS = frozenset(
        _SEEDANCE + name
        for name in (
            "1-0-pro-250528",
            "1-0-pro-fast-251015",
            "1-5-pro-251215",
            "1-0-lite-t2v-250428",
            "1-0-lite-i2v-250428",
            "2-0-260128",
            "2-0-fast-260128",
            "2-0-mini-260615",
            "2-5-260628",
        )
    )
    RATIOS = frozenset({"16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"})

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        model = str(_enum(body, "model", self.MODELS, required=True))
        texts, images = [], 0
        for item in _content_items(body):
            kind = item.get("type")
            if kind == "text":
                texts.append(_prompt(item.get("text")))
            elif kind == "image_url":
                _media_url(item, kind)
                _enum(item, "role", {"first_frame", "last_frame", "reference_image"})
                images += 1
            else:
                raise bad_request(f"content[].type must be text or image_url, got {kind!r}")
        if "lite-t2v" in model and images:
            raise bad_request(f"model {model} takes no image; use its i2v twin")
        if "lite-i2v" in model and not images:
            raise bad_request(f"model {model} needs an image_url item in content")
        if not texts and not images:
            raise bad_request("content needs a text item or an image_url item")
        if "duration" in body and "frames" in body:
            raise bad_request("send duration or frames, not both")
        frames = _integer(body, "frames", range(29, 362))
        if frames is not None and (frames - 25) % 4:
            raise bad_request(f"frames must be 25 + 4n, got {frames}")
        allowed = self.DURATIONS[model.removeprefix(self.PREFIX)[:3]]
        duration = _integer(body, "duration", [-1, *allowed], default=5)
        if frames is not None:
            duration = max(1, round(frames / 24))
        elif duration == -1:
            duration = 5  # automatic: the model picks; 5 s here
        ratio = _enum(body, "ratio", self.RATIOS, default="adaptive")
        resolution = _enum(body, "resolution", {"480p", "720p", "1080p", "4k"}, default="720p")  # lower case
        _flag(body, "generate_audio")
        _integer(body, "execution_expires_after", range(3600, 259201))
        width, height = _frame(ratio, "1080p" if resolution == "4k" else str(resolution))
        return (texts[0] if texts else ""), width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        request = job.record["request"]
        tokens = job.width * job.height * 24 * job.seconds // 1024  # ByteDance's video token count
        video = {
            "id": "cgt-" + time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3),
            "status": "succeeded",
            "content": {"video_url": video_url},
            "model": request["model"],
            "ratio": request.get("ratio", "adaptive"),
            "resolution": request.get("resolution", "720p"),
            "duration": job.seconds,
            "usage": {"completion_tokens": tokens, "total_tokens": tokens},
        }
        return {"data": [video]}


class Wan(Service):
    name = "wan"
    IMAGE_MODELS = frozenset({"wan2.6-i2v", "wan2.6-i2v-flash", "wan2.6-r2v"})
    _SIZE = re.compile(r"^(?P<width>[1-9][0-9]{2,3})\*(?P<height>[1-9][0-9]{2,3})$")

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        action = _enum(body, "action", {"text2video", "image2video"}, default="text2video")
        model = _enum(body, "model", {"wan2.6-t2v", *self.IMAGE_MODELS}, required=True)
        # Wan's guide: text2video takes only wan2.6-t2v, image2video only the image models.
        if (action == "text2video") != (model == "wan2.6-t2v"):
            raise bad_request(f"model {model} does not do action {action}")
        prompt = _prompt(body.get("prompt"))
        image = _url(body, "image_url")
        if model in ("wan2.6-i2v", "wan2.6-i2v-flash") and not image:
            raise bad_request(f"model {model} needs image_url")
        if action == "text2video" and image:
            raise bad_request("image_url needs action image2video")
        _string_list(body, "reference_video_urls")
        _url(body, "audio_url")
        _text(body, "negative_prompt")
        duration = _integer(body, "duration", (5, 10, 15), default=5)
        resolution = _enum(body, "resolution", {"480P", "720P", "1080P"})  # upper case
        _enum(body, "shot_type", {"single", "multi"})
        _flag(body, "audio")
        _flag(body, "prompt_extend")
        size = body.get("size")
        if size is not None:
            match = self._SIZE.match(size) if isinstance(size, str) else None
            if match is None:
                raise bad_request(f"size must be WIDTH*HEIGHT (e.g. 1280*720), got {size!r}")
            width, height = int(match["width"]), int(match["height"])
            if width % 2 or height % 2 or max(width, height) > 1920:
                raise bad_request(f"size must have even sides of at most 1920, got {size!r}")
        else:
            # Without a size the tier decides; with an image the image's aspect would, which the
            # simulator does not read: 16:9.
            width, height = _frame("16:9", str(resolution or "720P").lower())
        return prompt, width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return {"video_url": video_url, "state": "completed"}


class HappyHorse(Service):
    name = "happyhorse"
    # Each action's model suffix.
    ACTIONS: ClassVar[dict[str, str]] = {
        "generate": "t2v",
        "image_to_video": "i2v",
        "reference_to_video": "r2v",
        "video_edit": "video-edit",
    }
    MODELS = frozenset(
        {f"happyhorse-{version}-{kind}" for version in ("1.0", "1.1") for kind in ("t2v", "i2v", "r2v")}
        | {"happyhorse-1.0-video-edit"}
    )

    def validate(self, body: dict[str, Any]) -> tuple[str, int, int, int]:
        action = str(_enum(body, "action", self.ACTIONS, default="generate"))
        model = str(_enum(body, "model", self.MODELS, default="happyhorse-1.1-t2v"))
        if not model.endswith("-" + self.ACTIONS[action]):
            raise bad_request(f"model {model} does not do action {action}")
        prompt = body.get("prompt")
        prompt = _prompt(prompt) if prompt is not None or action != "image_to_video" else ""
        if action == "image_to_video" and not _url(body, "image_url"):
            raise bad_request("action image_to_video needs image_url")
        references = _string_list(body, "image_urls")
        if action == "reference_to_video" and not 1 <= len(references) <= 9:
            raise bad_request(f"image_urls takes 1 to 9 images for reference_to_video, got {len(references)}")
        if action == "video_edit" and not _url(body, "video_url"):
            raise bad_request("action video_edit needs video_url")
        duration = _integer(body, "duration", range(3, 16), default=5)
        ratio = _enum(body, "ratio", {"16:9", "9:16", "1:1", "4:3", "3:4"}, default="16:9")
        resolution = _enum(body, "resolution", {"720P", "1080P"}, default="1080P")  # upper case
        width, height = _frame(ratio, str(resolution).lower())
        return prompt, width, height, duration

    def success(self, job: Job, video_url: str) -> dict[str, Any]:
        return {"data": [{"id": str(uuid.uuid4()), "video_url": video_url, "state": "succeeded"}]}


# -- Field checks: each names the field in its message, as the tests (and a reader) want.
_TIERS = {"480p": 480, "720p": 720, "768p": 768, "1080p": 1080}


def _frame(ratio: str, tier: str) -> tuple[int, int]:
    """The frame of an aspect ratio at a resolution tier: 16:9 at 720p is 1280x720."""
    if ratio == "adaptive":  # follows the input image, which is not read here
        ratio = "16:9"
    across, down = (int(part) for part in ratio.split(":"))
    short = _TIERS[tier]
    if across >= down:
        return round(short * across / down / 2) * 2, short
    return short, round(short * down / across / 2) * 2


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _not_simulated(service: str, action: str) -> SimError:
    # It needs a video made earlier (extend, get1080p), which the simulator does not keep.
    return SimError(400, "api_not_implemented", f"{service} action {action} is not simulated")


def _prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request("prompt is required and must be a non-empty string")
    return value


def _enum(
    body: dict[str, Any], name: str, allowed: Any, *, default: str | None = None, required: bool = False
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required (one of {sorted(allowed)})")
        return default
    if not isinstance(value, str) or value not in allowed:
        raise bad_request(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def _integer(
    body: dict[str, Any], name: str, allowed: Any, *, default: int | None = None, required: bool = False
) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required")
        return default
    if type(value) is not int or value not in allowed:  # bool is an int subclass: refused
        shown = f"{allowed.start} to {allowed.stop - 1}" if isinstance(allowed, range) else sorted(allowed)
        raise bad_request(f"{name} must be an integer in {shown}, got {value!r}")
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (type(value) not in (int, float) or not low <= value <= high):
        raise bad_request(f"{name} must be a number from {low} to {high}, got {value!r}")


def _flag(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise bad_request(f"{name} must be a boolean")


def _text(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], str):
        raise bad_request(f"{name} must be a string")


def _url(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
        raise bad_request(f"{name} must be an http(s) URL string")
    return value


def _string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is not None and (not isinstance(value, list) or not all(isinstance(url, str) for url in value)):
        raise bad_request(f"{name} must be a list of strings")
    return value or []


def _object_list(body: dict[str, Any], name: str, url_field: str) -> list[dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise bad_request(f"{name} must be a list of objects")
    for item in value:
        _url(item, url_field)
    return value


def _content_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = body.get("content")
    if not isinstance(content, list) or not content or not all(isinstance(item, dict) for item in content):
        raise bad_request("content is required and must be a non-empty list of objects")
    return content


def _media_url(item: dict[str, Any], kind: str) -> None:
    # `{"type": "image_url", "image_url": {"url": ...}}`: a bare string is refused (seedance's guide).
    holder = item.get(kind)
    if not isinstance(holder, dict) or _url(holder, "url") is None:
        raise bad_request(f'content[].{kind} must be an object {{"url": "https://..."}}')


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (Sora(), Veo(), Kling(), Luma(), Hailuo(), Minimax(), Seedance(), Wan(), HappyHorse())
}
