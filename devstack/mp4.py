"""Small, real, playable H.264 MP4s for the provider simulator: they must pass what a real video
would (players, ffprobe, PyAV). A flat colour and a brighter bar sweeping across once, both from the
seed (the task id), so each task gets its own bytes while flat frames keep libx264 fast."""

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
    """Write a `width`x`height` MP4 of exactly `seconds` to a path or a seekable file (MP4 seeks back
    to finish its index); the bytes written. The seed is the `title` tag, tying a file to its task."""
    if isinstance(path_or_fileobj, str | os.PathLike):
        with open(path_or_fileobj, "w+b") as file:
            return render_mp4(file, width=width, height=height, seconds=seconds, seed=seed, fps=fps)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even for yuv420p, got {width}x{height}")
    frames = round(seconds * fps)
    if fps <= 0 or frames <= 0 or abs(frames - seconds * fps) > 1e-9:
        raise ValueError(f"seconds * fps must be a positive whole number of frames, got {seconds} * {fps}")
    digest = hashlib.sha256(seed.encode()).digest()
    # YUV colours from the seed: luma mid-range (the bar brighter), chroma anywhere legal.
    background = (48 + digest[0] % 80, 16 + digest[1] % 225, 16 + digest[2] % 225)
    bar = (150 + digest[3] % 86, 16 + digest[4] % 225, 16 + digest[5] % 225)
    bar_width = max(2, (width // 12) & ~1)  # even, so the chroma columns line up
    travel = width - bar_width
    start = path_or_fileobj.tell()
    with av.open(path_or_fileobj, mode="w", format="mp4") as container:
        container.metadata["title"] = seed
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = fps  # a keyframe a second: a player seeks anywhere cheaply
        stream.codec_context.thread_type = "AUTO"
        stream.options = {"preset": "fast", "crf": "30"}  # crf 30 keeps flat frames tiny
        for index in range(frames):
            offset = (index * travel) // max(1, frames - 1)  # one sweep, in a direction from the seed
            x = (offset if digest[6] % 2 == 0 else travel - offset) & ~1
            # PyAV's yuv420p layout: the Y plane, then U and V as two quarter-size blocks.
            planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
            luma, chroma = planes[:height], planes[height:].reshape(2, height // 2, width // 2)
            luma[:], chroma[0], chroma[1] = background
            luma[:, x : x + bar_width] = bar[0]
            chroma[:, :, x // 2 : (x + bar_width) // 2] = np.array(bar[1:], dtype=np.uint8)[:, None, None]
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return path_or_fileobj.seek(0, os.SEEK_END) - start
