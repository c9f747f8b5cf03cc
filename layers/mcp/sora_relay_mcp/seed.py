"""The seed MCP server's vocabulary (AceDataCloud's Sora tools) mapped onto sora-relay's.

- Its v1 options (`small`/`large`, `orientation`, 10/15/25 s) name no model we have: they are
  mapped to a live model that offers them, or refused naming the option and what to use instead.
- Its answers: the submit body with a polling hint, and the task record with a status hint, built
  from our public video object, so an agent written for the seed reads them unchanged.
"""

from __future__ import annotations

from typing import Any

from sora_relay.domain.acedata_sora import callback_body, trace_id

POLL_TOOL = "sora_get_task"
BATCH_POLL_TOOL = "sora_get_tasks_batch"
POLL_INTERVAL_SECONDS = 15
MAX_POLL_ATTEMPTS = 100
EXPECTED_WAIT_SECONDS = 600
MAX_BATCH = 50  # the upstream batch lookup's limit

# Sora's v1 `size` was a quality class and `orientation` its aspect; these are the frame sizes the
# live models spell them with (720p for small, 1080p for large).
V1_SIZES = {
    ("small", "landscape"): "1280x720",
    ("small", "portrait"): "720x1280",
    ("large", "landscape"): "1920x1080",
    ("large", "portrait"): "1080x1920",
}
_STATE = {"queued": "pending", "in_progress": "processing", "completed": "succeeded", "failed": "failed"}
_OTHER_CLASS = {"small": "large", "large": "small"}


class NoFittingModel(ValueError):
    """No live model offers a v1 option; `param` names the tool's parameter."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def choose_v1_model(
    models: list[dict[str, Any]],
    *,
    asked: str,
    seconds: int,
    size_class: str,
    orientation: str,
    image: bool,
) -> tuple[str, str]:
    """The live model (and its `WxH` size) for a v1 request: the one the operator aliased `asked`
    to when it fits, else the first in catalogue order that offers the length, size and image."""
    size = V1_SIZES[(size_class, orientation)]
    preferred = next((model.get("served_by") for model in models if model["id"] == asked), None)
    usable = [model for model in models if model.get("status") == "live" and model.get("available")]
    usable.sort(key=lambda model: model["id"] != preferred)  # stable: catalogue order otherwise
    if not usable:
        raise NoFittingModel("no model is available in this deployment", param="model")
    lengths = [model for model in usable if seconds in model["seconds"]]
    if not lengths:
        offered = ", ".join(str(value) for value in sorted({s for model in usable for s in model["seconds"]}))
        raise NoFittingModel(
            f"no live model makes {seconds}-second videos (lengths offered: {offered} s); use "
            "sora_generate_video_v2 (4, 8 or 12 s), or generate_video with a model and seconds from list_models",
            param="duration",
        )
    sized = [model for model in lengths if size in model["sizes"]]
    if not sized:
        other = V1_SIZES[(_OTHER_CLASS[size_class], orientation)]
        hint = (
            f"; size {_OTHER_CLASS[size_class]} ({other}) is offered"
            if any(other in model["sizes"] for model in lengths)
            else ""
        )
        raise NoFittingModel(
            f"no live model makes {seconds}-second {orientation} videos at {size} (size {size_class}){hint}; "
            "or use generate_video with a model and size from list_models",
            param="size",
        )
    fitting = [model for model in sized if model.get("image")] if image else sized
    if not fitting:
        raise NoFittingModel(
            f"no live model makes {seconds}-second {size} videos from an image; "
            "use generate_video with a model whose `image` is true (list_models)",
            param="image_urls",
        )
    return fitting[0]["id"], size


def submission(video: dict[str, Any], *, callback: bool = False) -> dict[str, Any]:
    """The seed's submit answer (`success`, `task_id`, `trace_id`) plus its polling hint."""
    task_id = str(video["id"])
    then = (
        " The result is also POSTed to your callback_url (signed with Standard Webhooks headers)."
        if callback
        else ""
    )
    return {
        "success": True,
        "task_id": task_id,
        "trace_id": trace_id(task_id),
        "model": video.get("served_model") or video.get("model"),
        "mcp_async_submission": {
            "task_id": task_id,
            "poll_tool": POLL_TOOL,
            "batch_poll_tool": BATCH_POLL_TOOL,
            "recommended_action": "poll",
            "should_poll": True,
            "terminal_state_reached": False,
            "polling_interval_seconds": POLL_INTERVAL_SECONDS,
            "max_poll_attempts": MAX_POLL_ATTEMPTS,
            "expected_wait_seconds": EXPECTED_WAIT_SECONDS,
            "next_step": (
                f'Call {POLL_TOOL}(task_id="{task_id}") until the task completes and the video URL is '
                f"there. Video generation usually takes 1-5 minutes; wait {POLL_INTERVAL_SECONDS} seconds "
                f"between polls.{then}"
            ),
        },
    }


def state_of(video: dict[str, Any]) -> str:
    return _STATE.get(str(video.get("status")), "processing")


def task_record(video: dict[str, Any]) -> dict[str, Any]:
    """The seed's task record: state, the request, the upstream `response` once finished (with
    `data[].video_url`, our own copy's link), and the status hint."""
    task_id = str(video["id"])
    state = state_of(video)
    complete, failed = state == "succeeded", state == "failed"
    record: dict[str, Any] = {
        "id": task_id,
        "task_id": task_id,
        "trace_id": trace_id(task_id),
        "type": "videos",
        "state": state,
        "status": video.get("status"),
        "progress": video.get("progress"),
        "created_at": video.get("created_at"),
        "finished_at": video.get("completed_at"),
        "request": {
            "prompt": video.get("prompt"),
            "model": video.get("model"),
            "served_model": video.get("served_model"),
            "duration": int(video["seconds"]) if str(video.get("seconds", "")).isdigit() else None,
            "size": video.get("size"),
            "callback_url": video.get("callback_url"),
        },
    }
    response = callback_body(video)
    if response is not None:
        record["response"] = response
    if complete:
        next_step = "The task is complete. Stop polling and give the user the video URL (data[0].video_url)."
    elif failed:
        next_step = "The task failed. Stop polling and tell the user why (response.error)."
    else:
        next_step = (
            f"The task is still {state}. Wait {POLL_INTERVAL_SECONDS} seconds, then call "
            f'{POLL_TOOL}(task_id="{task_id}") again; generation usually takes 1-5 minutes.'
        )
    record["mcp_task_polling"] = {
        "task_id": task_id,
        "poll_tool": POLL_TOOL,
        "batch_poll_tool": BATCH_POLL_TOOL,
        "recommended_action": "stop" if complete or failed else "poll",
        "should_poll": not (complete or failed),
        "terminal_state_reached": complete or failed,
        "is_complete": complete,
        "is_failed": failed,
        "state": state,
        "polling_interval_seconds": POLL_INTERVAL_SECONDS,
        "max_poll_attempts": MAX_POLL_ATTEMPTS,
        "next_step": next_step,
    }
    return record
