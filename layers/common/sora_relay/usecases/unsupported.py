"""Use case: OpenAI's video edits, extensions and characters, which no catalogue model can serve.

Each catalogue model generates from a prompt and at most a first-frame image (catalogue.json; its
`image` says which take one). An edit, an extension or a character needs a model that takes a
video as input. Some provider services could (AceData's kling `extend`, luma `extend` and
happyhorse `video_edit`, ../shared/providers/acedata-video.md), but none of them is in the
catalogue, so the answer is a 400 in OpenAI's shape that says so and names the models there are,
rather than a 404 that reads like a wrong base URL.
"""

from __future__ import annotations

from typing import NoReturn

from sora_relay.domain.errors import InvalidRequest, NotFound
from sora_relay.usecases.deps import Deps

WHAT = {
    "edit": "edit a video (POST /v1/videos/edits)",
    "extend": "extend a video (POST /v1/videos/extensions)",
    "create_character": "make a character from a video (POST /v1/videos/characters)",
}


def _live(deps: Deps) -> str:
    return ", ".join(entry.id for entry in deps.catalogue.live())


def refuse_operation(deps: Deps, operation: str) -> NoReturn:
    raise InvalidRequest(
        f"No model of this deployment can {WHAT[operation]}: every catalogue model generates from a"
        f" prompt and at most a first-frame image, none takes a video as input (models: {_live(deps)})."
        " Create a new video with POST /v1/videos instead.",
        param="video",
        code="unsupported_operation",
    )


def refuse_character(deps: Deps, character_id: str) -> NoReturn:
    raise NotFound(
        f"No character with id {character_id}: no model of this deployment makes characters"
        f" (models: {_live(deps)})",
        param="character_id",
        code="character_not_found",
    )
