"""Use case: draw a task's thumbnail and spritesheet from its archived MP4 and store them beside it.

Part of the archive attempt's claimed work (archive.py): it runs once the copy is in the bucket
and its sha256 is known, reads the stored object itself (ranged GETs, never the provider's URL
again), and its keys are recorded by the same conditional `complete` as the video's. So a repeated
archive message never draws them twice (the task is terminal, or another attempt holds the claim),
and an attempt that loses the race deletes them with its MP4.

A preview that cannot be made (a corrupt frame, a codec the decoder lacks, our S3 failing) never
fails the task: the video is what the client paid for. The task completes without previews, the
reason is recorded as `preview_error` and logged, and `/content?variant=thumbnail` answers 404.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sora_relay.adapters.media import render_previews
from sora_relay.domain.errors import SoraRelayError, describe_cause
from sora_relay.domain.video import Variant, preview_key
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps


@dataclass(frozen=True)
class PreviewOutcome:
    keys: dict[Variant, str] = field(default_factory=dict)  # stored previews by variant
    error: str | None = None
    seconds: float = 0.0

    @property
    def written(self) -> list[str]:
        return list(self.keys.values())


def make_previews(deps: Deps, video_key: str) -> PreviewOutcome:
    """Draw and store both previews of the MP4 at `video_key`, or neither (with the reason)."""
    started = time.perf_counter()
    stored: dict[Variant, str] = {}
    try:
        with deps.video_store.open(video_key) as video:
            rendered = render_previews(video)
        images = {
            Variant.THUMBNAIL: (
                rendered.thumbnail,
                {"width": str(rendered.thumbnail_size[0]), "height": str(rendered.thumbnail_size[1])},
            ),
            Variant.SPRITESHEET: (rendered.spritesheet, {"layout": rendered.layout.describe()}),
        }
        for variant, (body, metadata) in images.items():
            key = preview_key(video_key, variant)
            deps.video_store.put_preview(key, body, content_type=variant.content_type, metadata=metadata)
            stored[variant] = key
    except Exception as error:  # any failure leaves the task without previews, never failed
        reason = (
            error.message if isinstance(error, SoraRelayError) else f"Previews failed: {type(error).__name__}"
        )
        _remove(deps, stored.values())
        seconds = time.perf_counter() - started
        logger.warning(
            "Previews could not be made; the task completes without them",
            extra={"reason": reason, "cause": describe_cause(error), "preview_seconds": round(seconds, 3)},
        )
        metrics.add_metric(name="PreviewFailed", unit="Count", value=1)
        return PreviewOutcome(error=reason, seconds=seconds)
    seconds = time.perf_counter() - started
    logger.info(
        "Previews made",
        extra={
            "preview_seconds": round(seconds, 3),
            "decoded_frames": rendered.decoded_frames,
            "spritesheet_layout": rendered.layout.describe(),
        },
    )
    return PreviewOutcome(keys=stored, seconds=seconds)


def remove_previews(deps: Deps, outcome: PreviewOutcome) -> None:
    """Best effort: an attempt that could not record its previews deletes them (the bucket's
    lifecycle rule removes any this misses)."""
    _remove(deps, outcome.written)


def _remove(deps: Deps, keys: Iterable[str]) -> None:
    for key in list(keys):
        with contextlib.suppress(SoraRelayError):
            deps.video_store.delete(key)
