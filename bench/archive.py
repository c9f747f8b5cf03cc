"""Benchmark 2: archiving a video (issue 6).

The archive function's code path (sora_relay.usecases.archive.copy_video, into a key from
storage.video_key(task_id, provider_task_id, attempt), with the real services: SafeHttp,
VideoStore, the boto3 S3 client of sora_relay.adapters.aws, and ArchiveFunction's environment from
events/env.json) copies an MP4 from a local HTTP server into S3 on moto's server. The baseline,
in the same run and against the same moto, is httpx streaming into boto3's `upload_fileobj`
(default TransferConfig). The task bookkeeping around the copy (claim, complete) is not timed:
it is a few table writes, whatever the size.

Targets: throughput at least 0.9 of the baseline's (256 MiB video); peak resident memory growth at
most 64 MiB, at 64 MiB and at 1 GiB of video alike.

Previews: after each of our copies the same child draws the thumbnail and spritesheet from the
stored object as the archive step does (sora_relay.usecases.previews.make_previews: ranged GETs
from moto, PyAV, Pillow, two PUTs), timed apart from the copy; PyAV and Pillow are imported before
the clock, as in a warm function (their import is reported on its own). Reported as the ratio of
the preview time to the copy time of the same round, for the padded throughput video (whose
picture is a 1 s 320x240 clip) and for a real 8 s 1280x720 24 fps clip padded to a provider's file
size (`--clip-mib`, 8; `--clip-repeats` rounds), where decoding is the larger share. Its picture is
flat (a coloured field and a moving bar), so it decodes faster than real footage would.

Every copy runs in a fresh process: imports done and clients created first, then its resident set
is read (VmRSS) and its peak reset (/proc/self/clear_refs), then the copy, then the peak (VmHWM)
minus the resident set before is its "peak RSS growth". The video server and moto each run in
their own process, so their memory is not counted. The video is a small real MP4 (devstack.mp4)
padded to the exact size with a trailing top-level `free` box, generated on the fly. The server
(`video_handler`, `VideoServer`) is shared with bench/callback.py.

    .venv/bin/python -m bench.archive [--repeats 7] [--memory-repeats 2] [--size-mib 256] [--small-mib 64] [--large-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import MIB, Figure, Spread

BENCH = "archive"
HOST = "127.0.0.1"
RESULT = "BENCH-RESULT "
_PAD_CHUNK = MIB
# What the archive function is given in local mode (events/env.json), so Settings load as deployed.
_ENV_JSON = harness.ROOT / "events" / "env.json"
_FUNCTION = "ArchiveFunction"


# ---------------------------------------------------------------------------------------------
# The video: a real small MP4, then a `free` box up to the exact size (never all in memory)


def video_pieces(head: bytes, size: int) -> Iterator[bytes | memoryview]:
    """`head` (a whole MP4) followed by one top-level `free` box making the file `size` bytes."""
    pad = size - len(head)
    if pad < 16:
        raise ValueError(f"the video must be at least {len(head) + 16} bytes")
    if pad <= 0xFFFFFFFF:
        box = pad.to_bytes(4, "big") + b"free"
    else:  # 64-bit box size: size field 1, then the largesize
        box = (1).to_bytes(4, "big") + b"free" + pad.to_bytes(8, "big")
    yield head + box
    zeros = memoryview(bytes(_PAD_CHUNK))
    left = pad - len(box)
    while left > 0:
        step = min(left, _PAD_CHUNK)
        yield zeros[:step]
        left -= step


def video_sha256(head: bytes, size: int) -> str:
    digest = hashlib.sha256()
    for piece in video_pieces(head, size):
        digest.update(piece)
    return digest.hexdigest()


def render_head() -> bytes:
    from devstack.mp4 import render_mp4

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "head.mp4"
        render_mp4(path, width=320, height=240, seconds=1, seed="bench-archive")
        return path.read_bytes()


def render_clip() -> bytes:
    """A provider-sized clip for the preview figure: 8 s of 1280x720 at 24 fps (192 frames)."""
    from devstack.mp4 import render_mp4

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        render_mp4(path, width=1280, height=720, seconds=8, seed="bench-archive-clip", fps=24)
        return path.read_bytes()


class RequestCount:
    """Connections accepted and requests read by a video server (any method, any path)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.paths: list[str] = []

    def connection(self) -> None:
        with self._lock:
            self.connections += 1

    def request(self, line: str) -> None:
        with self._lock:
            self.requests += 1
            self.paths.append(line)


def video_handler(head: bytes, count: RequestCount | None = None) -> type[BaseHTTPRequestHandler]:
    """GET /<size>.mp4 answers that many bytes of MP4 (`head` padded); `count` sees every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def parse_request(self) -> bool:
            if count is not None:  # every request line, before the method is even looked at
                count.request(self.raw_requestline.decode("latin-1").strip())
            return super().parse_request()

        def do_GET(self) -> None:
            name = self.path.strip("/").removesuffix(".mp4")
            if not name.isdigit():
                self.send_error(404)
                return
            size = int(name)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for piece in video_pieces(head, size):
                    self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading (a headers-only check)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class VideoServer:
    """The video server on a thread of this process, counting what reaches it (with: its URL)."""

    def __init__(self, head: bytes) -> None:
        self.count = RequestCount()
        count = self.count

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                count.connection()
                return True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up
                    super().handle_error(request, client_address)

        self._server = Server((HOST, 0), video_handler(head, count))
        self._thread = threading.Thread(target=self._server.serve_forever, name="video-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> VideoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve(port: int, head_path: str) -> None:
    """The video server's process: GET /<size>.mp4 answers that many bytes of MP4."""
    head = Path(head_path).read_bytes()
    ThreadingHTTPServer((HOST, port), video_handler(head)).serve_forever()


# ---------------------------------------------------------------------------------------------
# One measured copy, in its own process


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux 4.0+); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _StreamReader:
    """The minimal file object upload_fileobj needs: read(n) over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def read(self, size: int = -1) -> bytes:
        pieces = [self._left] if self._left else []
        have = len(self._left)
        self._left = b""
        while size < 0 or have < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            pieces.append(chunk)
            have += len(chunk)
        data = b"".join(pieces)
        if 0 <= size < len(data):
            data, self._left = data[:size], data[size:]
        return data


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Copy one video (spec: mode, url, size, bucket, sha256) and measure it; runs in a fresh process."""
    bucket, size, url = spec["bucket"], spec["size"], spec["url"]
    if spec["mode"] == "ours":
        from sora_relay.adapters import aws
        from sora_relay.domain.video import video_key
        from sora_relay.runtime.container import current
        from sora_relay.usecases.archive import copy_video

        task_id = f"video_{uuid.uuid4().hex}"
        key = video_key(task_id, "bench-provider-task", uuid.uuid4().hex[:16])  # as archive_task names it
        s3 = aws.s3_client()
        deps = current()
        deps.video_store  # noqa: B018  (built before the clock starts, as in a warm function)
        deps.outbound_http  # noqa: B018
        s3.head_bucket(Bucket=bucket)  # the same warm-up as the baseline's

        def copy() -> dict[str, Any]:
            archived = copy_video(deps, url, key)
            if archived.key != key:
                raise RuntimeError(f"copy_video stored {archived.key}, not {key}")
            return {"size": archived.size, "sha256": archived.sha256}
    else:
        import boto3
        import httpx
        from boto3.s3.transfer import TransferConfig  # noqa: F401  (imported before measuring)
        from s3transfer.manager import TransferManager  # noqa: F401

        key = f"videos/baseline-{uuid.uuid4().hex}.mp4"
        s3 = boto3.client("s3")
        http = httpx.Client()
        s3.head_bucket(Bucket=bucket)

        def copy() -> dict[str, Any]:
            with http.stream("GET", url) as response:
                response.raise_for_status()
                s3.upload_fileobj(_StreamReader(response.iter_bytes()), bucket, key)
            return {}

    before = _status_bytes("VmRSS")
    reset = _reset_peak()
    cpu_before = time.process_time()
    started = time.perf_counter()
    answer = copy()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    peak = _status_bytes("VmHWM")
    stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    previews = _previews(deps, key) if spec["mode"] == "ours" else {}
    for extra in previews.pop("keys", []):
        s3.delete_object(Bucket=bucket, Key=extra)
    s3.delete_object(Bucket=bucket, Key=key)
    if stored != size or answer.get("size", size) != size:
        raise RuntimeError(f"{spec['mode']}: stored {stored} bytes, answered {answer}, expected {size}")
    if "sha256" in answer and answer["sha256"] != spec["sha256"]:
        raise RuntimeError(f"{spec['mode']}: sha256 {answer['sha256']} != {spec['sha256']}")
    return {
        "mode": spec["mode"],
        "size": size,
        "seconds": seconds,
        "mib_s": size / MIB / seconds,
        "cpu_seconds": cpu,
        "rss_before": before,
        "peak": peak,
        "growth": peak - before,
        "peak_reset": reset,
        **previews,
    }


def _previews(deps: Any, key: str) -> dict[str, Any]:
    """Draw and store the previews of the object just copied, as archive_task does; timed alone."""
    from sora_relay.usecases.previews import make_previews

    imported = time.perf_counter()
    import av  # noqa: F401  (the MediaLayer's imports, done before the clock as in a warm function)
    import PIL.Image
    import PIL.WebPImagePlugin  # noqa: F401

    import_seconds = time.perf_counter() - imported
    before = _status_bytes("VmRSS")
    _reset_peak()
    cpu_before = time.process_time()
    started = time.perf_counter()
    outcome = make_previews(deps, key)
    seconds = time.perf_counter() - started
    if outcome.error is not None:
        raise RuntimeError(f"previews failed: {outcome.error}")
    return {
        "preview_seconds": seconds,
        "preview_cpu_seconds": time.process_time() - cpu_before,
        "preview_growth": _status_bytes("VmHWM") - before,
        "media_import_seconds": import_seconds,
        "keys": outcome.written,
    }


# ---------------------------------------------------------------------------------------------
# The run


def _child_env(endpoint: str) -> dict[str, str]:
    from devstack.stack import FAKE_AWS

    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    env.update(FAKE_AWS)
    env["AWS_ENDPOINT_URL"] = endpoint
    env.update(json.loads(_ENV_JSON.read_text())[_FUNCTION])
    env["ALLOW_LOOPBACK_URLS"] = "true"
    env["POWERTOOLS_TRACE_DISABLED"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.ROOT), env.get("PYTHONPATH")]))
    return env


class Runner:
    def __init__(self, env: dict[str, str], video_url: str, head: bytes) -> None:
        self.env = env
        self.video_url = video_url
        self.head = head
        self.bucket = env["VIDEOS_BUCKET_NAME"]
        self._sha: dict[tuple[bytes, int], str] = {}
        self.runs: list[dict[str, Any]] = []

    def run(self, mode: str, size: int, *, clip: tuple[str, bytes] | None = None) -> dict[str, Any]:
        """One copy of `size` bytes: the padded head, or (`clip`: its server's URL and its MP4) the clip."""
        url, head = clip or (self.video_url, self.head)
        if (head, size) not in self._sha:
            self._sha[(head, size)] = video_sha256(head, size)
        spec = {
            "mode": mode,
            "size": size,
            "url": f"{url}/{size}.mp4",
            "bucket": self.bucket,
            "sha256": self._sha[(head, size)],
        }
        done = subprocess.run(
            [sys.executable, "-m", "bench.archive", "--child", json.dumps(spec)],
            env=self.env,
            cwd=harness.ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{mode} copy of {size} bytes failed:\n{done.stdout}\n{done.stderr}")
        result = json.loads(lines[-1][len(RESULT) :])
        result["clip"] = clip is not None
        self.runs.append(result)
        drawn = (
            f"  previews {result['preview_seconds']:5.2f} s (+{result['preview_growth'] / MIB:5.1f} MiB)"
            if "preview_seconds" in result
            else ""
        )
        print(
            f"  {mode:8} {size / MIB:6.1f} MiB  {result['seconds']:6.2f} s  {result['mib_s']:6.1f} MiB/s  "
            f"peak RSS growth {result['growth'] / MIB:6.1f} MiB  CPU {result['cpu_seconds']:5.2f} s{drawn}",
            flush=True,
        )
        return result


def _sizes_text(size: int) -> str:
    return (
        f"{size // 1024 // MIB} GiB"
        if size >= 1024 * MIB and size % (1024 * MIB) == 0
        else f"{size // MIB} MiB"
    )


def measure(args: argparse.Namespace) -> int:
    from devstack.processes import stop_process
    from devstack.stack import free_port, moto_server, wait_listening

    head = render_head()
    clip = render_clip()
    # Padded to a provider's file size for such a clip (the flat test picture compresses to a few KiB).
    clip_size = args.clip_mib * MIB
    size = args.size_mib * MIB
    small, large = args.small_mib * MIB, args.large_mib * MIB
    with tempfile.TemporaryDirectory() as folder, moto_server() as endpoint:
        servers, ports = [], []
        for name, video in (("head", head), ("clip", clip)):
            path = Path(folder) / f"{name}.mp4"
            path.write_bytes(video)
            ports.append(free_port())
            servers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.archive", "--serve", str(ports[-1]), str(path)],
                    cwd=harness.ROOT,
                    stdin=subprocess.DEVNULL,
                )
            )
        port, clip_port = ports
        try:
            for server, server_port in zip(servers, ports, strict=True):
                if not wait_listening(server_port, server, time.monotonic() + 30):
                    raise RuntimeError("a video server did not start")
            env = _child_env(endpoint)
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=env["AWS_DEFAULT_REGION"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.create_bucket(Bucket=env["VIDEOS_BUCKET_NAME"])
            runner = Runner(env, f"http://{HOST}:{port}", head)

            print(f"throughput: {args.size_mib} MiB, {args.repeats} rounds (+1 warm-up), interleaved")
            main = harness.interleaved(
                {
                    "ours": lambda: runner.run("ours", size),
                    "baseline": lambda: runner.run("baseline", size),
                },
                args.repeats,
            )
            print(f"memory: {_sizes_text(small)} and {_sizes_text(large)}, {args.memory_repeats} rounds each")
            memory = {
                target: harness.interleaved(
                    {
                        "ours": lambda target=target: runner.run("ours", target),
                        "baseline": lambda target=target: runner.run("baseline", target),
                    },
                    args.memory_repeats,
                    warmup=0,
                )
                for target in (small, large)
            }
            print(
                f"previews: the 8 s 1280x720 clip padded to {args.clip_mib} MiB, {args.clip_repeats} rounds (+1 warm-up)"
            )
            clip_runs = harness.interleaved(
                {"ours": lambda: runner.run("ours", clip_size, clip=(f"http://{HOST}:{clip_port}", clip))},
                args.clip_repeats,
            )["ours"]
        finally:
            for server in servers:
                stop_process(server)

    def values(results: list[dict[str, Any]], field: str, scale: float = 1.0) -> list[float]:
        return [result[field] / scale for result in results]

    ours, base = main["ours"], main["baseline"]
    ratio = harness.ratios(values(ours, "mib_s"), values(base, "mib_s"))
    growth = {
        ("ours", size): values(ours, "growth", MIB),
        ("baseline", size): values(base, "growth", MIB),
    }
    for target, runs in memory.items():
        growth[("ours", target)] = values(runs["ours"], "growth", MIB)
        growth[("baseline", target)] = values(runs["baseline"], "growth", MIB)

    label = _sizes_text(size)
    figures = [
        Figure(
            BENCH,
            f"throughput ours/baseline ({label})",
            Spread.of(ratio),
            "x",
            limit=0.9,
            at_least=True,
            note="MiB/s of copy_video over MiB/s of httpx + upload_fileobj, round by round",
        ),
        Figure(BENCH, f"throughput ours ({label})", Spread.of(values(ours, "mib_s")), " MiB/s"),
        Figure(BENCH, f"throughput baseline ({label})", Spread.of(values(base, "mib_s")), " MiB/s"),
    ]
    for target in (small, size, large):
        figures.append(
            Figure(
                BENCH,
                f"peak RSS growth ours ({_sizes_text(target)})",
                Spread.of(growth[("ours", target)]),
                " MiB",
                limit=64,
            )
        )
    for target in (small, size, large):
        figures.append(
            Figure(
                BENCH,
                f"peak RSS growth baseline ({_sizes_text(target)})",
                Spread.of(growth[("baseline", target)]),
                " MiB",
            )
        )
    for target, runs in memory.items():
        for mode in ("ours", "baseline"):
            figures.append(
                Figure(
                    BENCH,
                    f"throughput {mode} ({_sizes_text(target)})",
                    Spread.of(values(runs[mode], "mib_s")),
                    " MiB/s",
                )
            )
    clip_ratio = harness.ratios(values(clip_runs, "preview_seconds"), values(clip_runs, "seconds"))
    figures += [
        Figure(
            BENCH,
            f"previews / copy ({label}; its picture a 1 s 320x240 clip)",
            Spread.of(harness.ratios(values(ours, "preview_seconds"), values(ours, "seconds"))),
            "x",
            note="make_previews' time over copy_video's, the same round and child",
        ),
        Figure(
            BENCH,
            f"previews / copy (8 s 1280x720 24 fps clip, {args.clip_mib} MiB)",
            Spread.of(clip_ratio),
            "x",
            note="what drawing the previews adds to archiving a provider-sized clip",
        ),
        Figure(BENCH, "previews (8 s 1280x720 clip)", Spread.of(values(clip_runs, "preview_seconds")), " s"),
        Figure(BENCH, "copy (8 s 1280x720 clip)", Spread.of(values(clip_runs, "seconds")), " s"),
        Figure(
            BENCH,
            "peak RSS growth previews (8 s 1280x720 clip)",
            Spread.of(values(clip_runs, "preview_growth", MIB)),
            " MiB",
        ),
        Figure(
            BENCH,
            "PyAV + Pillow import (once per cold start)",
            Spread.of(values(clip_runs, "media_import_seconds")),
            " s",
        ),
    ]
    harness.print_figures("archiving a video (benchmark 2)", figures)

    import statistics

    extra = {
        "video_mib": args.size_mib,
        "cost_model": {
            "ours_median_seconds": statistics.median(values(ours, "seconds")),
            "baseline_median_seconds": statistics.median(values(base, "seconds")),
            "ours_median_mib_s": statistics.median(values(ours, "mib_s")),
            "baseline_median_mib_s": statistics.median(values(base, "mib_s")),
            "ours_median_cpu_seconds": statistics.median(values(ours, "cpu_seconds")),
            "previews_median_seconds": statistics.median(values(clip_runs, "preview_seconds")),
            "previews_over_copy_clip": statistics.median(clip_ratio),
            "baseline_median_cpu_seconds": statistics.median(values(base, "cpu_seconds")),
            "ours_peak_rss_mib": {
                _sizes_text(target): statistics.median(
                    [
                        run["peak"] / MIB
                        for run in runner.runs
                        if run["mode"] == "ours" and run["size"] == target
                    ]
                )
                for target in (small, size, large)
            },
            "ours_peak_rss_growth_mib": {
                _sizes_text(target): statistics.median(growth[("ours", target)])
                for target in (small, size, large)
            },
            "baseline_peak_rss_growth_mib": {
                _sizes_text(target): statistics.median(growth[("baseline", target)])
                for target in (small, size, large)
            },
        },
        "settings": _copy_settings(),
        "runs": runner.runs,
    }
    path = harness.save(BENCH, figures, **extra)
    print(f"\nsaved {path}")
    return harness.exit_code(figures)


def _copy_settings() -> dict[str, int]:
    """The part size and upload concurrency the measured copies used (environment or default)."""
    from sora_relay.settings import Settings

    return {
        name: int(os.environ.get(name.upper(), Settings.model_fields[name].default))
        for name in ("video_part_bytes", "video_upload_concurrency")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds at --size-mib (default 7)")
    parser.add_argument(
        "--memory-repeats", type=int, default=2, help="rounds at each memory size (default 2)"
    )
    parser.add_argument("--size-mib", type=int, default=256, help="video for the throughput figure")
    parser.add_argument("--small-mib", type=int, default=64, help="small video for the memory figure")
    parser.add_argument("--large-mib", type=int, default=1024, help="large video for the memory figure")
    parser.add_argument(
        "--clip-repeats",
        type=int,
        default=5,
        help="rounds of the 720p clip for the previews figure (default 5)",
    )
    parser.add_argument("--clip-mib", type=int, default=8, help="the clip padded to this size (default 8)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        print(RESULT + json.dumps(result), flush=True)
        return 0
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
