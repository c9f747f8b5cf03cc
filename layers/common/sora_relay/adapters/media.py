"""The two previews of an archived MP4, drawn from its own frames: a thumbnail and a spritesheet (WebP).

PyAV (FFmpeg's decoders) and Pillow (WebP) come from the MediaLayer, which only ArchiveFunction
has: they are imported inside `render_previews`, so importing this module costs nothing and every
other function (and the layer check, which imports every module with the common layer alone) is
unaffected.

What is drawn:
- thumbnail: the frame at 10% of the duration (past a fade-in, still early), scaled to at most
  THUMBNAIL_MAX_WIDTH wide, never up;
- spritesheet: up to SPRITE_FRAMES frames at the starts of equal slices of the duration (the
  first at 0), each scaled to SPRITE_WIDTH wide, laid left to right, top to bottom in rows of
  SPRITE_COLUMNS; empty cells are black. A clip with fewer frames gives one cell per frame.

The decoder seeks to the keyframe before each wanted time and decodes forward to it (a near target
is reached by decoding on), so a long video is not decoded whole; at most MAX_DECODED_FRAMES are
decoded in all, and a picture larger than MAX_PIXELS is refused, so a hostile file cannot hold the
function for long or take its memory. Anything the decoder or encoder refuses is PreviewFailed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import IO, Any

from sora_relay.domain.errors import PreviewFailed

THUMBNAIL_AT = 0.10  # of the duration
THUMBNAIL_MAX_WIDTH = 640
SPRITE_FRAMES = 10
SPRITE_WIDTH = 160
SPRITE_COLUMNS = 5
WEBP_QUALITY = 80
MAX_DECODED_FRAMES = 3000
MAX_PIXELS = 8192 * 4320  # 8K
# A target this close ahead is reached by decoding on rather than by a seek (which restarts at
# the keyframe before it).
_DECODE_ON_SECONDS = 1.0


@dataclass(frozen=True)
class SpriteLayout:
    columns: int
    rows: int
    frame_width: int
    frame_height: int
    frames: int
    times: tuple[float, ...]  # seconds from the start, one per cell

    def describe(self) -> str:
        """One line for the object's metadata, so a client can cut the sheet without guessing."""
        times = ",".join(f"{t:.3f}" for t in self.times)
        return (
            f"columns={self.columns};rows={self.rows};frame={self.frame_width}x{self.frame_height};"
            f"frames={self.frames};times={times}"
        )


@dataclass(frozen=True)
class RenderedPreviews:
    thumbnail: bytes  # image/webp
    thumbnail_size: tuple[int, int]
    spritesheet: bytes  # image/webp
    layout: SpriteLayout
    decoded_frames: int


def render_previews(video: IO[bytes]) -> RenderedPreviews:
    """Both previews of the MP4 read from `video` (a seekable binary file); PreviewFailed if the
    file cannot be decoded into them."""
    import av  # the MediaLayer's; see the module docstring

    try:
        with av.open(video, mode="r") as container:
            return _render(container)
    except PreviewFailed:
        raise
    except (av.FFmpegError, ValueError, OSError, MemoryError) as error:
        raise PreviewFailed(f"The video could not be decoded for previews: {type(error).__name__}") from error


def _render(container: Any) -> RenderedPreviews:
    if not container.streams.video:
        raise PreviewFailed("The video has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise PreviewFailed("The video stream has no picture size")
    if width * height > MAX_PIXELS:
        raise PreviewFailed(f"The video's picture ({width}x{height}) is too large to preview")
    duration = _duration(container, stream)
    rate = float(stream.average_rate or stream.guessed_rate or 0) or None
    frame_count = stream.frames or (round(duration * rate) if rate else 0)
    cells = max(1, min(SPRITE_FRAMES, frame_count or SPRITE_FRAMES))
    sprite_times = [duration * index / cells for index in range(cells)]
    thumbnail_time = duration * THUMBNAIL_AT
    # A quarter frame of slack: a frame stamped a hair before its nominal time still counts.
    slack = 0.25 / rate if rate else 0.001

    reader = _FrameReader(container, stream, slack)
    wanted = sorted({thumbnail_time, *sprite_times})
    frames = {time: reader.frame_at(time) for time in wanted}

    thumbnail_width, thumbnail_height = _scaled(width, height, min(width, THUMBNAIL_MAX_WIDTH))
    thumbnail = frames[thumbnail_time].to_image(width=thumbnail_width, height=thumbnail_height)
    cell_width, cell_height = _scaled(width, height, SPRITE_WIDTH)
    columns = min(cells, SPRITE_COLUMNS)
    rows = math.ceil(cells / columns)
    from PIL import Image  # the MediaLayer's

    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height))
    for index, time in enumerate(sprite_times):
        cell = frames[time].to_image(width=cell_width, height=cell_height)
        sheet.paste(cell, ((index % columns) * cell_width, (index // columns) * cell_height))
    layout = SpriteLayout(
        columns, rows, cell_width, cell_height, cells, tuple(round(t, 3) for t in sprite_times)
    )
    return RenderedPreviews(
        thumbnail=_webp(thumbnail),
        thumbnail_size=(thumbnail_width, thumbnail_height),
        spritesheet=_webp(sheet),
        layout=layout,
        decoded_frames=reader.decoded,
    )


def _duration(container: Any, stream: Any) -> float:
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        import av

        seconds = container.duration / av.time_base
    else:
        raise PreviewFailed("The video's duration is unknown")
    if not 0 < seconds < 24 * 3600:
        raise PreviewFailed(f"The video's duration ({seconds:.1f} s) is out of range")
    return seconds


def _scaled(width: int, height: int, target_width: int) -> tuple[int, int]:
    """`target_width` wide at the picture's aspect ratio; both even (what swscale's yuv420p likes)."""
    target_height = max(2, round(height * target_width / width))
    return max(2, target_width & ~1), max(2, target_height & ~1)


def _webp(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


class _FrameReader:
    """Frames at increasing times: the first frame at or after each time (the last one past the end)."""

    def __init__(self, container: Any, stream: Any, slack: float) -> None:
        self._container = container
        self._stream = stream
        self._slack = slack
        self._start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self._frames: Any = None
        self._last: Any = None
        self._last_time: float | None = None
        self.decoded = 0

    def frame_at(self, seconds: float) -> Any:
        target = self._start + seconds
        if self._last is not None and self._last_time is not None and self._last_time >= target - self._slack:
            return self._last  # already there (two wanted times within one frame)
        if self._frames is None or self._last_time is None or target - self._last_time > _DECODE_ON_SECONDS:
            offset = int(target / self._stream.time_base)
            self._container.seek(max(offset, 0), stream=self._stream, backward=True)
            self._frames = self._container.decode(self._stream)
        for frame in self._frames:
            self.decoded += 1
            if self.decoded > MAX_DECODED_FRAMES:
                raise PreviewFailed(f"More than {MAX_DECODED_FRAMES} frames decoded for the previews")
            self._last = frame
            self._last_time = frame.time if frame.time is not None else self._last_time
            if self._last_time is not None and self._last_time >= target - self._slack:
                return frame
        if self._last is None:
            raise PreviewFailed("The video has no decodable frame")
        self._frames = iter(())  # the end: every later time gets the last frame
        return self._last
