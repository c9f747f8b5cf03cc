"""Render small, real, playable H.264 MP4 files for the provider simulator.

The simulator stands in for a video model, so what it serves must survive the same checks a real
video would (a player, ffprobe, PyAV): correct size, exact duration, valid container. The picture
is a flat colour with a moving bar, both derived from a seed (the task id), so every task yields
different bytes and a recognisable clip, while flat content keeps libx264 fast.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

__all__ = ["render_mp4"]

# x264 settings: "fast" as agreed; crf keeps flat frames tiny; the GOP of one second lets a
# player seek anywhere in a clip without decoding much.
_PRESET = "fast"
_CRF = "30"


def _palette(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int], int]:
    """Background YUV, bar YUV and bar direction (+1/-1), all from the seed's hash."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    # Keep luma mid-range so both colours stay visible; chroma anywhere in the legal range.
    background = (48 + digest[0] % 80, 16 + digest[1] % 225, 16 + digest[2] % 225)
    bar = (150 + digest[3] % 86, 16 + digest[4] % 225, 16 + digest[5] % 225)
    direction = 1 if digest[6] % 2 == 0 else -1
    return background, bar, direction


def _frame_planes(
    width: int,
    height: int,
    background: tuple[int, int, int],
) -> np.ndarray:
    """A yuv420p frame as one (height * 3 / 2, width) array, filled with the background."""
    # PyAV's yuv420p layout: the Y plane, then U and V packed as two quarter-size blocks.
    planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
    planes[:height] = background[0]
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    chroma[0] = background[1]
    chroma[1] = background[2]
    return planes


def render_mp4(
    path_or_fileobj: str | os.PathLike[str] | BinaryIO,
    *,
    width: int,
    height: int,
    seconds: float,
    seed: str,
    fps: int = 4,
) -> int:
    """Write a `width`x`height` H.264 MP4 lasting exactly `seconds`; return the bytes written.

    `path_or_fileobj` is a file path or a seekable binary file object (MP4 needs to seek back to
    finish its index). `seconds * fps` must be a whole number of frames so the duration is exact.
    The seed ends up in the container's `title` tag, which lets a test tie a file to its task.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even for yuv420p, got {width}x{height}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frame_count = round(seconds * fps)
    if frame_count <= 0 or abs(frame_count - seconds * fps) > 1e-9:
        raise ValueError(f"seconds * fps must be a positive whole number, got {seconds} * {fps}")

    background, bar, direction = _palette(seed)
    base = _frame_planes(width, height, background)
    bar_width = max(2, (width // 12) & ~1)  # even, so the chroma columns line up

    is_path = isinstance(path_or_fileobj, str | os.PathLike)
    start = 0 if is_path else path_or_fileobj.tell()  # type: ignore[union-attr]
    target = os.fspath(path_or_fileobj) if is_path else path_or_fileobj  # type: ignore[arg-type]

    with av.open(target, mode="w", format="mp4") as container:
        container.metadata["title"] = seed
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = fps
        stream.codec_context.thread_type = "AUTO"
        stream.options = {"preset": _PRESET, "crf": _CRF}

        travel = width - bar_width
        for index in range(frame_count):
            planes = base.copy()
            # The bar sweeps across the whole width once per clip, so every frame differs.
            offset = (index * travel) // max(1, frame_count - 1) if frame_count > 1 else 0
            x = offset if direction > 0 else travel - offset
            x &= ~1
            planes[:height, x : x + bar_width] = bar[0]
            chroma = planes[height:].reshape(2, height // 2, width // 2)
            chroma[0, :, x // 2 : (x + bar_width) // 2] = bar[1]
            chroma[1, :, x // 2 : (x + bar_width) // 2] = bar[2]

            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames

    if is_path:
        return Path(target).stat().st_size  # type: ignore[arg-type]
    fileobj = path_or_fileobj
    fileobj.seek(0, os.SEEK_END)  # type: ignore[union-attr]
    return fileobj.tell() - start  # type: ignore[union-attr]
