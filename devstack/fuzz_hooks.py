"""Schemathesis hooks, check and report for fuzzing the local stack (dev-only; devstack/fuzz.toml).

Each piece is what schemathesis cannot know about this API. The FUZZ_* variables come from
`python -m devstack.fuzz`: FUZZ_API_KEY, FUZZ_CALLBACK_KEY and FUZZ_VIDEO_IDS (comma-separated).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import zlib
from collections import Counter, defaultdict
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.cli import handler
from schemathesis.engine import events
from schemathesis.openapi.checks import RejectedPositiveData

# What an outbound URL the service would accept becomes: nothing listens on the discard port, and
# the run never lets a task finish anyway.
SAFE_URL = "https://127.0.0.1:9/fuzz"
# The local gateway's HTTP server answers other methods (TRACE, QUERY, ...) with its own HTML 501,
# which API Gateway does not: such cases would test the dev server, not the API.
GATEWAY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# A valid callback token is made only for task ids that cannot be a task's and travel unencoded, so
# the callback gets as far as its body and never touches a real task.
TASK_ID = re.compile(r"video_[0-9a-f]{32}")
UNENCODED = re.compile(r"[A-Za-z0-9._~-]+")
KNOWN_ID_PERCENT = 35  # positive reads that name a seed video (states the run cannot reach)
SIGNED_CALLBACK_PERCENT = 40
# Valid input may still be refused for these: an Idempotency-Key reused with another body or in flight.
IDEMPOTENCY_CODES = frozenset({"idempotency_key_reused", "idempotency_key_in_use"})


def _percent(case: Case, salt: str) -> int:
    """0-99 from the case's own data: reproducible and shrinkable, unlike a draw outside Hypothesis."""
    data = repr((salt, case.method, case.path_parameters, case.query, case.body))
    return zlib.crc32(data.encode("utf-8", "surrogateescape")) % 100


def _json(content: bytes | None) -> Any:
    try:
        return json.loads(content or b"")
    except ValueError:
        return None


def _is_loopback_literal(host: str) -> bool:
    from sora_relay.domain.outbound_url import _unmapped

    try:
        return _unmapped(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False  # a DNS name


def is_error_shape(body: Any) -> bool:
    """{"error": {"code": str (not empty), "message": str, "param": str | null}} and nothing else."""
    error = body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message", "param"}
        and isinstance(error["code"], str)
        and bool(error["code"])
        and isinstance(error["message"], str)
        and (error["param"] is None or isinstance(error["param"], str))
    )


# -- nothing leaves 127.0.0.1 -------------------------------------------------------------------------------


def pin_outbound_urls(body: Any) -> bool:
    """Replace, in place, each URL of a create body that the service would accept and later call, and
    that names anything but a loopback address, with SAFE_URL; True if it changed. Judged by the
    service's own model and URL rules, so the two cannot differ."""
    from pydantic import ValidationError

    from sora_relay.domain.errors import UnsafeUrl
    from sora_relay.domain.models import CreateVideoRequest
    from sora_relay.domain.outbound_url import parse_outbound_url

    try:
        request = CreateVideoRequest.model_validate(json.loads(json.dumps(body)))
    except (ValidationError, ValueError, TypeError):
        return False  # refused before its URLs are looked at
    urls = [("callback_url", None, request.callback_url), ("input_reference", None, request.input_reference)]
    urls += [("image_urls", index, url) for index, url in enumerate(request.image_urls or [])]
    changed = False
    for name, index, url in urls:
        if url is None:
            continue
        try:
            host = parse_outbound_url(url, field=name, allow_loopback=True).host
        except UnsafeUrl:
            continue  # the service refuses it too
        if _is_loopback_literal(host):
            continue
        if index is None:
            body[name] = SAFE_URL
        else:
            body[name][index] = SAFE_URL
        changed = True
    return changed


@schemathesis.hook
def before_call(context: Any, case: Case, kwargs: dict[str, Any]) -> None:
    # Here rather than in map_case: every request of every phase passes here.
    if case.operation.label == "POST /v1/videos":
        pin_outbound_urls(case.body)


# -- what generation alone cannot reach --------------------------------------------------------------------


@schemathesis.hook
def filter_case(context: Any, case: Case) -> bool:
    return case.method.upper() in GATEWAY_METHODS


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


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Case, response: Any) -> bool:
    """Valid input refused because its Idempotency-Key was reused is the API doing its job."""
    body = _json(response.content)
    reused = is_error_shape(body) and body["error"]["code"] in IDEMPOTENCY_CODES
    return not (reused and isinstance(failure, RejectedPositiveData))


# -- the check ----------------------------------------------------------------------------------------------


@schemathesis.check
def error_shape(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every 4xx, the service's and API Gateway's, is the error shape (a HEAD answer has no body)."""
    status = response.status_code
    if 400 <= status < 500 and case.method.upper() != "HEAD" and not is_error_shape(_json(response.content)):
        raise AssertionError(f"A {status} answer is not the error shape {{error: {{code, message, param}}}}")
    return None


# -- the report ---------------------------------------------------------------------------------------------


class RequestTally:
    """Requests sent, probes included, by operation and status: schemathesis counts test cases."""

    sent = 0  # of the last run, for devstack.fuzz's budget

    def __init__(self, *args: Any, **params: Any) -> None:
        self.by_operation: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def start(self, ctx: Any) -> None: ...

    def handle_event(self, ctx: Any, event: Any) -> None:
        if not isinstance(event, events.ScenarioFinished):
            return
        for case_id, interaction in event.recorder.interactions.items():
            case = event.recorder.cases[case_id].value
            same = interaction.request.method.upper() == case.operation.method.upper()
            label = case.operation.label if same else "undocumented methods on the paths"
            status = interaction.response.status_code if interaction.response is not None else "no answer"
            self.by_operation[label][str(status)] += 1

    def shutdown(self, ctx: Any) -> None:
        total: Counter[str] = sum(self.by_operation.values(), Counter())
        RequestTally.sent = sum(total.values())
        classes = Counter(
            status if status == "no answer" else f"{status[0]}xx" for status in total.elements()
        )
        print(
            f"\nrequests      {RequestTally.sent} sent: "
            + ", ".join(f"{k} {n}" for k, n in sorted(classes.items()))
        )
        for label, statuses in sorted(self.by_operation.items()):
            counts = ", ".join(f"{status} {n}" for status, n in sorted(statuses.items()))
            print(f"  {label:<42} {sum(statuses.values()):>5}  ({counts})")


handler()(RequestTally)  # not as a decorator: it returns None
