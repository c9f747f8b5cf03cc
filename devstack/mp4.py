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
from typing import BinaryIO

import av
import numpy as np

__all__ = ["render_mp4"]


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
    frames = round(seconds * fps)
    if frames <= 0 or abs(frames - seconds * fps) > 1e-9:
        raise ValueError(f"seconds * fps must be a positive whole number, got {seconds} * {fps}")

    digest = hashlib.sha256(seed.encode()).digest()
    # YUV colours from the seed: luma mid-range so both stay visible, chroma anywhere legal.
    background = (48 + digest[0] % 80, 16 + digest[1] % 225, 16 + digest[2] % 225)
    bar = (150 + digest[3] % 86, 16 + digest[4] % 225, 16 + digest[5] % 225)
    bar_width = max(2, (width // 12) & ~1)  # even, so the chroma columns line up
    travel = width - bar_width
    is_path = isinstance(path_or_fileobj, str | os.PathLike)
    start = 0 if is_path else path_or_fileobj.tell()  # type: ignore[union-attr]
    with av.open(
        os.fspath(path_or_fileobj) if is_path else path_or_fileobj, mode="w", format="mp4"
    ) as container:  # type: ignore[arg-type]
        container.metadata["title"] = seed
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = fps  # a keyframe a second: a player seeks anywhere cheaply
        stream.codec_context.thread_type = "AUTO"
        stream.options = {"preset": "fast", "crf": "30"}  # crf 30 keeps flat frames tiny
        for index in range(frames):
            # PyAV's yuv420p layout: the Y plane, then U and V as two quarter-size blocks.
            planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
            luma, chroma = planes[:height], planes[height:].reshape(2, height // 2, width // 2)
            luma[:], chroma[0], chroma[1] = background
            # The bar sweeps across the whole width once per clip, in a direction from the seed.
            offset = (index * travel) // max(1, frames - 1)
            x = (offset if digest[6] % 2 == 0 else travel - offset) & ~1
            luma[:, x : x + bar_width] = bar[0]
            chroma[0, :, x // 2 : (x + bar_width) // 2] = bar[1]
            chroma[1, :, x // 2 : (x + bar_width) // 2] = bar[2]
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    if is_path:
        return os.path.getsize(path_or_fileobj)  # type: ignore[arg-type]
    path_or_fileobj.seek(0, os.SEEK_END)  # type: ignore[union-attr]
    return path_or_fileobj.tell() - start  # type: ignore[union-attr]
