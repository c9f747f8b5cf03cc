"""The preview maker (adapters/media.py) on real MP4s rendered by devstack/mp4.py, decoded back with Pillow."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from devstack.mp4 import render_mp4
from sora_relay.adapters import media
from sora_relay.adapters.media import render_previews
from sora_relay.domain.errors import PreviewFailed

ROOT = Path(__file__).resolve().parents[2]


def _mp4(width: int, height: int, seconds: float, *, fps: int = 4, seed: str = "previews") -> io.BytesIO:
    buffer = io.BytesIO()
    render_mp4(buffer, width=width, height=height, seconds=seconds, seed=seed, fps=fps)
    buffer.seek(0)
    return buffer


def _webp(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    image.load()
    return image.convert("RGB")


def _cells(sheet: Image.Image, layout: media.SpriteLayout) -> list[Image.Image]:
    return [
        sheet.crop(
            (
                (index % layout.columns) * layout.frame_width,
                (index // layout.columns) * layout.frame_height,
                (index % layout.columns + 1) * layout.frame_width,
                (index // layout.columns + 1) * layout.frame_height,
            )
        )
        for index in range(layout.frames)
    ]


def _bar_column(cell: Image.Image) -> int:
    """Where the clip's bright moving bar is: the brightest column of the cell's middle row."""
    gray = cell.convert("L")
    row = [gray.getpixel((x, gray.height // 2)) for x in range(gray.width)]
    return max(range(len(row)), key=row.__getitem__)


def test_a_landscape_clip_gives_a_640_thumbnail_and_a_grid_of_ten_distinct_frames():
    # Given a 720p clip of 4 s at 8 fps (32 frames) whose bar sweeps across once
    video = _mp4(1280, 720, 4, fps=8)

    # When the previews are drawn
    previews = render_previews(video)

    # Then the thumbnail is the picture at most 640 wide, at its aspect ratio
    thumbnail = _webp(previews.thumbnail)
    assert thumbnail.size == previews.thumbnail_size == (640, 360)
    # And the spritesheet is 10 cells of 160x90 in rows of 5
    layout = previews.layout
    assert (layout.columns, layout.rows, layout.frames) == (5, 2, 10)
    assert (layout.frame_width, layout.frame_height) == (160, 90)
    assert layout.times == (0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2, 3.6)
    sheet = _webp(previews.spritesheet)
    assert sheet.size == (800, 180)
    # And every cell shows another moment: the bar has moved, always the same way
    columns = [_bar_column(cell) for cell in _cells(sheet, layout)]
    assert len(set(columns)) == 10, columns
    assert columns == sorted(columns) or columns == sorted(columns, reverse=True), columns
    # And the thumbnail is the frame at 10% of the duration (0.4 s): the second cell's picture
    assert abs(_bar_column(thumbnail.resize((160, 90))) - columns[1]) <= 2
    # And only the frames needed were decoded (seek, then decode on), at most the clip's own
    assert previews.decoded_frames <= 32
    assert layout.describe().startswith("columns=5;rows=2;frame=160x90;frames=10;times=0.000,0.400,")


def test_a_short_clip_gives_one_cell_per_frame_and_is_never_scaled_up():
    # Given a 320x180 clip of 2 s at 4 fps: 8 frames, narrower than the thumbnail's 640
    previews = render_previews(_mp4(320, 180, 2))

    thumbnail = _webp(previews.thumbnail)
    assert thumbnail.size == (320, 180)
    layout = previews.layout
    assert (layout.columns, layout.rows, layout.frames) == (5, 2, 8)
    sheet = _webp(previews.spritesheet)
    assert sheet.size == (800, 180)
    columns = [_bar_column(cell) for cell in _cells(sheet, layout)]
    assert len(set(columns)) == 8, columns
    # The two cells past the last frame are empty: black (but for WebP's blur at their edge)
    empty = ImageStat.Stat(sheet.crop((480, 90, 800, 180)).convert("L"))
    assert empty.mean[0] < 2 and ImageStat.Stat(sheet.crop((0, 0, 480, 90)).convert("L")).mean[0] > 30


def test_a_portrait_clip_keeps_its_aspect_ratio():
    previews = render_previews(_mp4(720, 1280, 3))

    assert _webp(previews.thumbnail).size == (640, 1138)  # 1280 * 640 / 720, even
    layout = previews.layout
    assert (layout.frame_width, layout.frame_height) == (160, 284)
    assert _webp(previews.spritesheet).size == (5 * 160, 2 * 284)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:32] + bytes(len(data) - 32), id="zeroed-after-ftyp"),
        pytest.param(lambda data: b"\x00\x00\x00\x18ftypisom" + b"not a video at all" * 50, id="garbage"),
    ],
)
def test_a_video_the_decoder_cannot_read_is_a_preview_failure(damage):
    data = damage(_mp4(320, 180, 2).getvalue())

    with pytest.raises(PreviewFailed) as raised:
        render_previews(io.BytesIO(data))
    assert raised.value.code == "preview_failed" and raised.value.message


def test_decoding_stops_at_its_frame_budget(monkeypatch):
    # A hostile file (one keyframe, hours of frames) cannot hold the function: the budget ends it.
    monkeypatch.setattr(media, "MAX_DECODED_FRAMES", 3)

    with pytest.raises(PreviewFailed, match="More than 3 frames"):
        render_previews(_mp4(320, 180, 2))


def test_a_picture_over_the_size_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(media, "MAX_PIXELS", 320 * 180 - 1)

    with pytest.raises(PreviewFailed, match="too large"):
        render_previews(_mp4(320, 180, 2))


def test_the_decoder_and_the_encoder_are_imported_only_when_previews_are_made():
    # The common layer's functions have no MediaLayer: importing the archive function, or any
    # module of the package, must not need av or PIL.
    probe = (
        "import sys; sys.path[:0] = ['functions/archive', 'layers/common'];"
        "import sora_relay.adapters.media, app;"
        "loaded = sorted(m for m in ('av', 'PIL') if m in sys.modules);"
        "assert not loaded, loaded"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
