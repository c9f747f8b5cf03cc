"""Schemathesis hooks and check for `make fuzz` (devstack/fuzz.toml loads them; devstack.fuzz sets the
FUZZ_* variables): what schemathesis cannot know about this API."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import zlib
from typing import Any

import schemathesis
from pydantic import ValidationError
from schemathesis import Case

# An outbound URL the service would accept becomes this: nothing listens on the discard port.
SAFE_URL = "https://127.0.0.1:9/fuzz"
# Callbacks are signed only for ids that cannot be a task's and travel unencoded, so a signed
# callback gets as far as its body and never touches a real task.
TASK_ID = re.compile(r"video_[0-9a-f]{32}")
UNENCODED = re.compile(r"[A-Za-z0-9._~-]+")
KNOWN_ID_PERCENT = 35  # positive reads that name a seed video (states the run cannot reach)
SIGNED_CALLBACK_PERCENT = 40


def _percent(case: Case, salt: str) -> int:
    """0-99 from the case's own data: reproducible and shrinkable, unlike a draw outside Hypothesis."""
    data = repr((salt, case.method, case.path_parameters, case.query, case.body))
    return zlib.crc32(data.encode("utf-8", "surrogateescape")) % 100


def is_error_shape(body: Any) -> bool:
    """Whether `body` is the service's ErrorResponse (OpenAI's error object) and nothing else."""
    from sora_relay.runtime.api import ErrorResponse

    with contextlib.suppress(ValidationError):
        return bool(ErrorResponse.model_validate(body, strict=True))
    return False


def _calls_out(url: str | None, name: str) -> bool:
    """Whether the service would accept `url` and call anything but a loopback address with it."""
    from sora_relay.domain.errors import UnsafeUrl
    from sora_relay.domain.outbound_url import _unmapped, parse_outbound_url

    try:
        host = parse_outbound_url(url, field=name, allow_loopback=True).host if url else None
    except UnsafeUrl:
        return False  # the service refuses it too
    try:
        return host is not None and not _unmapped(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return True  # a DNS name


def pin_outbound_urls(body: Any) -> bool:
    """Replace, in place, each URL of a create body that the service would call outside 127.0.0.1
    with SAFE_URL (judged by the service's own model and URL rules); True if it changed."""
    from sora_relay.domain.create_request import CreateVideoRequest

    try:
        request = CreateVideoRequest.model_validate(json.loads(json.dumps(body)))
    except (ValidationError, ValueError, TypeError):
        return False  # refused before its URLs are looked at
    changed = False
    for name in ("callback_url", "input_reference"):
        if _calls_out(getattr(request, name), name):
            body[name], changed = SAFE_URL, True
    for index, url in enumerate(request.image_urls or []):
        if _calls_out(url, "image_urls"):
            body["image_urls"][index], changed = SAFE_URL, True
    return changed


@schemathesis.hook
def before_call(context: Any, case: Case, kwargs: dict[str, Any]) -> None:
    if case.operation.label == "POST /v1/videos":  # here: every request of every phase passes
        pin_outbound_urls(case.body)


@schemathesis.hook
def map_case(context: Any, case: Case) -> Case:
    """Name a seed video in some reads; sign some callbacks (for a task id that cannot exist)."""
    from sora_relay.domain.tokens import callback_token

    label = case.operation.label
    video_ids = [video_id for video_id in os.environ.get("FUZZ_VIDEO_IDS", "").split(",") if video_id]
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    if video_ids and not negative and _percent(case, "known") < KNOWN_ID_PERCENT:
        video_id = video_ids[_percent(case, "which") % len(video_ids)]
        if "{video_id}" in label and isinstance(case.path_parameters, dict):
            case.path_parameters["video_id"] = video_id
        elif label == "GET /v1/videos" and isinstance(case.query, dict):
            case.query["after"] = video_id
    task_id = (case.path_parameters or {}).get("task_id")
    if (
        label.startswith("POST /v1/callbacks/")
        and isinstance(case.query, dict)
        and isinstance(task_id, str)
        and UNENCODED.fullmatch(task_id)
        and not TASK_ID.fullmatch(task_id)
        and _percent(case, "signed") < SIGNED_CALLBACK_PERCENT
    ):
        case.query["token"] = callback_token(task_id, os.environ["FUZZ_CALLBACK_KEY"])
    return case


@schemathesis.check
def error_shape(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every 4xx, the service's and API Gateway's, is the error shape (a HEAD answer has no body)."""
    if not 400 <= response.status_code < 500 or case.method.upper() == "HEAD":
        return None
    with contextlib.suppress(ValueError):
        if is_error_shape(json.loads(response.content)):
            return None
    shape = "{error: {message, type, param, code}}"
    raise AssertionError(f"A {response.status_code} answer is not the error shape {shape}")
