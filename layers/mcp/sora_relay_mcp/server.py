"""The one MCP server definition: the seed server's ten tools and sora-relay's own four.

`build_server(backend_for, models=...)` makes the server; both transports serve the same one:
stdio (`sora-relay mcp`, an HTTP backend with the user's key) and `POST /mcp` (the Lambda, an
in-process backend per request). `backend_for(ctx)` picks the backend for a call (the caller of
an HTTP request, or the one the CLI was started with).

The seed tools keep the seed's names and input schemas (parameter names, types, enums, defaults,
required: tests/unit/test_mcp_server.py compares them) and answer one string, the seed's JSON.
Our own tools answer structured content (the video object), with a `video/mp4` resource link once
the video is done. Bad input is a tool error naming the parameter, and nothing is created.

No `from __future__ import annotations` here: the tools' signatures are read by the SDK, and the
enums of `generate_video` are types made from the catalogue when the server is built.
"""

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from sora_relay_mcp import seed
from sora_relay_mcp.backend import Backend, BackendError
from sora_relay_mcp.results import Model, ModelList, Video, VideoPage, json_text, video_result

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
BackendFor = Callable[[Context], Backend]

SERVER_NAME = "sora-relay"
INSTRUCTIONS = (
    "Generate videos with AI video models. Every generate tool returns at once with a task id; "
    "poll sora_get_task (or get_video) until the video is completed. The sora_* tools keep the "
    "names and arguments of AceDataCloud's Sora MCP server; generate_video takes any model from "
    "list_models."
)
PENDING_WAIT_SECONDS = 5.0  # sora_get_task waits this long on a pending task before answering

SeedModel = Literal["sora-2", "sora-2-pro"]
V1Size = Literal["small", "large"]
V1Duration = Literal[10, 15, 25]
Orientation = Literal["landscape", "portrait"]
V2Duration = Literal[4, 8, 12]
V2Size = Literal["720x1280", "1280x720", "1024x1792", "1792x1024"]

_GENERATE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
_LOCAL_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

# Parameter descriptions. The v2_async ones are the seed's own words; the rest are ours.
D_PROMPT = "Description of the video to generate."
D_CALLBACK = (
    "URL to receive the callback when video generation is complete. The result will be POSTed to "
    "this URL as JSON."
)
D_MODEL = "Sora model version."
D_V2_DURATION = "Video duration in seconds. Options: 4, 8, or 12."
D_V2_SIZE = "Video resolution in pixels."
D_IMAGE_URLS = "Optional list of reference image URLs. Only the first image is used."
D_V1_SIZE = "Video quality: small (720p) or large (1080p)."
D_V1_DURATION = "Video duration in seconds. Options: 10, 15, or 25."
D_ORIENTATION = "Video orientation: landscape or portrait."
D_FIRST_FRAME = "URLs of the image(s) to start the video from. Only the first image is used."
D_CHARACTER_URL = "URL of a video showing the character to feature."
D_CHARACTER_START = "Start of the character's appearance in the character video, in seconds."
D_CHARACTER_END = "End of the character's appearance in the character video, in seconds."
D_TASK_ID = "The task id a generate tool returned."
D_TASK_IDS = "Task ids the generate tools returned (at most 50)."


def _refusal(error: BackendError, renames: dict[str, str] | None = None) -> ToolError:
    """A tool error naming the tool's parameter (the API names its own field)."""
    if error.param is None:
        return ToolError(error.message)
    param = (renames or {}).get(error.param, error.param)
    message = error.message.removeprefix(f"{error.param}: ")
    return ToolError(f"{param}: {message}")


def _choices(values: list[Any], fallback: Any) -> Any:
    """`Literal[...]` of the values (the catalogue's), or `fallback` when there are none."""
    unique = list(dict.fromkeys(values))
    return Literal[tuple(unique)] if unique else fallback  # type: ignore[valid-type]


def build_server(
    backend_for: BackendFor,
    *,
    models: list[dict[str, Any]],
    pending_wait_seconds: float = PENDING_WAIT_SECONDS,
    version: str = "",
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
) -> MCPServer:
    """The server, with `generate_video`'s enums taken from `models` (`GET /v1/models`' list)."""
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, version=version, log_level=log_level)

    def tool(annotations: ToolAnnotations) -> Callable[[F], F]:
        """Register a tool; its docstring, on one line, is its description."""

        def register(fn: F) -> F:
            server.add_tool(fn, description=" ".join((fn.__doc__ or "").split()), annotations=annotations)
            return fn

        return register

    async def call(ctx: Context, fn: Callable[[Backend], T], renames: dict[str, str] | None = None) -> T:
        backend = backend_for(ctx)
        try:
            return await anyio.to_thread.run_sync(partial(fn, backend))
        except BackendError as error:
            raise _refusal(error, renames) from None

    async def submit(
        ctx: Context, body: dict[str, Any], renames: dict[str, str] | None = None
    ) -> dict[str, Any]:
        clean = {key: value for key, value in body.items() if value is not None}
        return await call(ctx, lambda backend: backend.submit(clean), renames)

    async def submit_v1(
        ctx: Context,
        *,
        prompt: str,
        model: str,
        size: str,
        duration: int,
        orientation: str,
        image_urls: list[str] | None = None,
        callback_url: str | None = None,
    ) -> str:
        catalogue = await call(ctx, lambda backend: backend.models())
        try:
            chosen, frame = seed.choose_v1_model(
                catalogue,
                asked=model,
                seconds=duration,
                size_class=size,
                orientation=orientation,
                image=bool(image_urls),
            )
        except seed.NoFittingModel as error:
            raise ToolError(f"{error.param}: {error.message}") from None
        body = {
            "prompt": prompt,
            "model": chosen,
            "duration": duration,
            "size": frame,
            "image_urls": image_urls,
            "callback_url": callback_url,
        }
        if callback_url:
            body["webhook_format"] = "acedata_sora"
        video = await submit(ctx, body)
        return json_text(seed.submission(video, callback=bool(callback_url)))

    async def submit_v2(
        ctx: Context,
        *,
        prompt: str,
        model: str,
        duration: int,
        size: str,
        image_urls: list[str] | None,
        callback_url: str | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "prompt": prompt,
            "model": model,  # mapped by the catalogue's aliases (ModelAliases) on the way in
            "duration": duration,
            "size": size,
            "image_urls": image_urls,
            "callback_url": callback_url,
        }
        if callback_url:
            body["webhook_format"] = "acedata_sora"
        video = await submit(ctx, body)
        return json_text(seed.submission(video, callback=bool(callback_url)))

    # -- the seed server's tools, in its order ---------------------------------------------------

    @tool(_READ)
    async def sora_list_models(ctx: Context = None) -> str:  # type: ignore[assignment]
        """List the video models this server offers: Sora's retired ones (and the live model an
        operator mapped each to) and the live models, with their lengths, sizes and prices."""
        catalogue = await call(ctx, lambda backend: backend.models())
        return json_text(
            {
                "models": [Model.model_validate(entry).model_dump(mode="json") for entry in catalogue],
                "note": (
                    "sora-2 and sora-2-pro are retired upstream; where this deployment maps them to a "
                    "live model, served_by names it. The v1 tools pick a live model that offers the "
                    "length and size asked for; generate_video takes any available model."
                ),
            }
        )

    @tool(_LOCAL_READ)
    async def sora_list_actions() -> str:
        """List this server's tools and what each one does."""
        tools = await server.list_tools()
        return json_text(
            {"actions": [{"tool": entry.name, "description": entry.description} for entry in tools]}
        )

    @tool(_READ)
    async def sora_get_task(
        task_id: Annotated[str, Field(description=D_TASK_ID)],
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Get a video task: its state, the request, and (once finished) the response with
        data[].video_url. Waits a few seconds while the task is still pending, so poll calmly."""
        renames = {"video_id": "task_id"}
        video = await call(ctx, lambda backend: backend.get(task_id), renames)
        if seed.state_of(video) in ("pending", "processing") and pending_wait_seconds > 0:
            await anyio.sleep(pending_wait_seconds)
            video = await call(ctx, lambda backend: backend.get(task_id), renames)
        return json_text(seed.task_record(video))

    @tool(_READ)
    async def sora_get_tasks_batch(
        task_ids: Annotated[list[str], Field(description=D_TASK_IDS)],
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Get several video tasks at once: {"items": [...], "count": n}; an unknown id is an item
        with an error."""
        if len(task_ids) > seed.MAX_BATCH:
            raise ToolError(f"task_ids: at most {seed.MAX_BATCH} ids per call, not {len(task_ids)}")

        def lookup(backend: Backend) -> list[dict[str, Any]]:
            items = []
            for task_id in dict.fromkeys(task_ids):
                try:
                    items.append(seed.task_record(backend.get(task_id)))
                except BackendError as error:
                    items.append(
                        {"id": task_id, "error": {"code": error.code or "error", "message": error.message}}
                    )
            return items

        items = await call(ctx, lookup)
        return json_text({"items": items, "count": len(items)})

    @tool(_GENERATE)
    async def sora_generate_video(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        size: Annotated[V1Size, Field(description=D_V1_SIZE)] = "large",
        duration: Annotated[V1Duration, Field(description=D_V1_DURATION)] = 15,
        orientation: Annotated[Orientation, Field(description=D_ORIENTATION)] = "landscape",
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Generate a video from a text prompt (Sora v1 options, made by a live model that offers
        them). Returns a task id at once; poll sora_get_task for the video."""
        return await submit_v1(
            ctx, prompt=prompt, model=model, size=size, duration=duration, orientation=orientation
        )

    @tool(_GENERATE)
    async def sora_generate_video_from_image(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        image_urls: Annotated[list[str], Field(description=D_FIRST_FRAME)],
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        size: Annotated[V1Size, Field(description=D_V1_SIZE)] = "large",
        duration: Annotated[V1Duration, Field(description=D_V1_DURATION)] = 15,
        orientation: Annotated[Orientation, Field(description=D_ORIENTATION)] = "landscape",
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Generate a video that starts from an image (Sora v1 options, made by a live model that
        takes images). Returns a task id at once; poll sora_get_task for the video."""
        if not image_urls:
            raise ToolError("image_urls: give at least one image URL")
        return await submit_v1(
            ctx,
            prompt=prompt,
            model=model,
            size=size,
            duration=duration,
            orientation=orientation,
            image_urls=image_urls,
        )

    @tool(_GENERATE)
    async def sora_generate_video_with_character(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        character_url: Annotated[str, Field(description=D_CHARACTER_URL)],
        character_start: Annotated[float, Field(description=D_CHARACTER_START)] = 0,
        character_end: Annotated[float, Field(description=D_CHARACTER_END)] = 1,
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        size: Annotated[V1Size, Field(description=D_V1_SIZE)] = "large",
        duration: Annotated[V1Duration, Field(description=D_V1_DURATION)] = 15,
        orientation: Annotated[Orientation, Field(description=D_ORIENTATION)] = "landscape",
    ) -> str:
        """Generate a video featuring a character from another video (Sora's cameos). No live
        model offers this: the call is refused with what to use instead, and nothing is made."""
        raise ToolError(
            "character_url: no live model features a character from a video (Sora's cameos went "
            "with Sora); to start from a picture of the character, call sora_generate_video_from_image "
            "with image_urls, or generate_video with image_url"
        )

    @tool(_GENERATE)
    async def sora_generate_video_async(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        callback_url: Annotated[str, Field(description=D_CALLBACK)],
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        size: Annotated[V1Size, Field(description=D_V1_SIZE)] = "large",
        duration: Annotated[V1Duration, Field(description=D_V1_DURATION)] = 15,
        orientation: Annotated[Orientation, Field(description=D_ORIENTATION)] = "landscape",
        image_urls: Annotated[list[str] | None, Field(description=D_IMAGE_URLS)] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Generate a video (Sora v1 options) and have the result POSTed to callback_url when it is
        done, signed with Standard Webhooks headers. Returns a task id at once."""
        return await submit_v1(
            ctx,
            prompt=prompt,
            model=model,
            size=size,
            duration=duration,
            orientation=orientation,
            image_urls=image_urls,
            callback_url=callback_url,
        )

    @tool(_GENERATE)
    async def sora_generate_video_v2(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        duration: Annotated[V2Duration, Field(description=D_V2_DURATION)] = 4,
        size: Annotated[V2Size, Field(description=D_V2_SIZE)] = "1280x720",
        image_urls: Annotated[list[str] | None, Field(description=D_IMAGE_URLS)] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Generate a video from a text prompt (and optionally a first-frame image) with Sora 2
        options; the model is served by the live model this deployment maps it to. Returns a task
        id at once; poll sora_get_task for the video."""
        return await submit_v2(
            ctx, prompt=prompt, model=model, duration=duration, size=size, image_urls=image_urls
        )

    @tool(_GENERATE)
    async def sora_generate_video_v2_async(
        prompt: Annotated[str, Field(description=D_PROMPT)],
        callback_url: Annotated[str, Field(description=D_CALLBACK)],
        model: Annotated[SeedModel, Field(description=D_MODEL)] = "sora-2",
        duration: Annotated[V2Duration, Field(description=D_V2_DURATION)] = 4,
        size: Annotated[V2Size, Field(description=D_V2_SIZE)] = "1280x720",
        image_urls: Annotated[list[str] | None, Field(description=D_IMAGE_URLS)] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> str:
        """Generate a video with Sora 2 options and have the result POSTed to callback_url when it
        is done (signed with Standard Webhooks headers). Returns a task id at once."""
        return await submit_v2(
            ctx,
            prompt=prompt,
            model=model,
            duration=duration,
            size=size,
            image_urls=image_urls,
            callback_url=callback_url,
        )

    # -- sora-relay's own tools ------------------------------------------------------------------

    # Live models and the retired ones aliased here; the lengths and sizes are the live models' (an
    # aliased model makes what the model serving it offers).
    live = [entry for entry in models if entry.get("status") == "live"]
    model_id = _choices([entry["id"] for entry in models if entry in live or entry.get("served_by")], str)
    seconds_choice = _choices(sorted({s for entry in live for s in entry["seconds"]}), int)
    size_choice = _choices(sorted({s for entry in live for s in entry["sizes"]}), str)

    @tool(_GENERATE)
    async def generate_video(
        prompt: Annotated[str, Field(description="What the video should show (at most 4000 characters).")],
        model: Annotated[
            model_id | None,
            Field(description="A model from list_models (default: this deployment's default model)."),
        ] = None,
        seconds: Annotated[
            seconds_choice | None,
            Field(description="Length in seconds; each model offers some (list_models)."),
        ] = None,
        size: Annotated[
            size_choice | None,
            Field(description="Frame size WIDTHxHEIGHT; each model offers some (list_models)."),
        ] = None,
        image_url: Annotated[
            str | None, Field(description="An https image to start from (models whose `image` is true).")
        ] = None,
        callback_url: Annotated[
            str | None,
            Field(description="An https URL to POST the signed video.completed / video.failed event to."),
        ] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, Video]:
        """Generate a video with any model of the catalogue. Returns the video task at once (status
        queued or in_progress); call get_video until it is completed."""
        body = {
            "prompt": prompt,
            "model": model,
            "seconds": str(seconds) if seconds is not None else None,
            "size": size,
            "image_urls": [image_url] if image_url else None,
            "callback_url": callback_url,
        }
        video = await submit(ctx, body, {"image_urls": "image_url", "duration": "seconds"})
        return video_result(video)

    @tool(_READ)
    async def get_video(
        video_id: Annotated[str, Field(description="The id generate_video returned (video_...).")],
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, Video]:
        """Get one of your videos; once completed it carries a link to the MP4 (a resource link)."""
        return video_result(await call(ctx, lambda backend: backend.get(video_id)))

    @tool(_READ)
    async def list_videos(
        limit: Annotated[int, Field(ge=1, le=100, description="How many videos (1-100).")] = 20,
        after: Annotated[str | None, Field(description="The last id of the previous page.")] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> VideoPage:
        """List your videos, newest first."""
        page = await call(ctx, lambda backend: backend.list(limit=limit, after=after))
        return VideoPage.model_validate(page)

    @tool(_READ)
    async def list_models(ctx: Context = None) -> ModelList:  # type: ignore[assignment]
        """List the catalogue's models: what each offers (seconds, sizes, image), its price, and
        whether this deployment can run it."""
        return ModelList(
            data=[Model.model_validate(entry) for entry in await call(ctx, lambda b: b.models())]
        )

    return server
