"""`sora-relay`: submit, watch and download Sora videos through the sora-relay API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from sora_relay_cli import __version__
from sora_relay_cli.api import (
    TERMINAL_STATUSES,
    ApiClient,
    ApiConnectionError,
    ApiError,
    Download,
    Video,
    VideoList,
)

ENV_URL = "SORA_RELAY_API_URL"
ENV_KEY = "SORA_RELAY_API_KEY"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Failure(Exception):
    """A one-line error for stderr with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Context:
    client: ApiClient
    json: bool
    out: TextIO
    err: TextIO
    sleep: Callable[[float], None]
    clock: Callable[[], float]


# -- argument parsing ------------------------------------------------------------------------------


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of `kind` greater than 0."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
        return value

    return parse


_positive_float = _positive(float)
_positive_int = _positive(int)


def _video_id(text: str) -> str:
    # Dot segments would be normalised away in the URL and hit another route.
    if text.strip() in ("", ".", ".."):
        raise argparse.ArgumentTypeError(f"not a video id: {text!r}")
    return text


def _add_global_options(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    # Declared on the top level and on every subcommand so `sora-relay list --json` works too;
    # SUPPRESS on the subcommands keeps them from overwriting a value given before the subcommand.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if on_subcommand else {}
    group = parser.add_argument_group("connection and output")
    group.add_argument("--api-url", metavar="URL", help=f"API stage URL (default: ${ENV_URL})", **default)
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (default: ${ENV_KEY}; prefer the variable, arguments show up in `ps`)",
        **default,
    )
    json_default: dict[str, Any] = default or {"default": False}
    group.add_argument(
        "--json", action="store_true", help="print raw JSON objects, one per line", **json_default
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sora-relay",
        description="Generate videos through the sora-relay API: submit, watch, download.",
        epilog="Exit codes: 0 success, 1 task failed or API error, 2 usage or config error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, on_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    submit = commands.add_parser("submit", help="create a video task", description="Create a video task.")
    submit.add_argument("prompt", metavar="PROMPT", help="what the video should show")
    # What each model offers is the server's catalogue (GET /v1/models): the API's 400 names the
    # field and the values the model offers.
    submit.add_argument("--model", help="a model id of GET /v1/models (default: the deployment's)")
    submit.add_argument("--duration", type=int, help="seconds, one the model offers (default: its own)")
    submit.add_argument("--size", help="WIDTHxHEIGHT, one the model offers (default: 1280x720 where offered)")
    submit.add_argument("--callback-url", metavar="URL", help="https URL to notify (Standard Webhooks)")
    submit.add_argument(
        "--image-url",
        metavar="URL",
        action="append",
        dest="image_urls",
        help="reference image (repeatable; the first is used)",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="default: a fresh UUID, so a retried request never creates a second task",
    )
    submit.add_argument("--wait", action="store_true", help="wait until the task completes or fails")
    submit.add_argument("--out", metavar="FILE", help="download the video here when done (implies --wait)")
    _add_wait_options(submit)
    _add_global_options(submit, on_subcommand=True)

    status = commands.add_parser("status", help="show one video", description="Show one video.")
    status.add_argument("video_id", metavar="ID", type=_video_id)
    _add_global_options(status, on_subcommand=True)

    listing = commands.add_parser("list", help="list your videos, newest first", description="List videos.")
    listing.add_argument("--limit", type=_positive_int, help="page size")
    listing.add_argument("--after", metavar="ID", help="start after this video id (the previous page's last)")
    _add_global_options(listing, on_subcommand=True)

    wait = commands.add_parser(
        "wait",
        help="follow a video until it completes or fails",
        description="Follow a video until it completes (exit 0) or fails (exit 1).",
    )
    wait.add_argument("video_id", metavar="ID", type=_video_id)
    _add_wait_options(wait)
    _add_global_options(wait, on_subcommand=True)

    download = commands.add_parser(
        "download", help="download a completed video", description="Download a completed video's MP4."
    )
    download.add_argument("video_id", metavar="ID", type=_video_id)
    download.add_argument("--out", metavar="FILE", required=True, help="where to write the MP4")
    _add_global_options(download, on_subcommand=True)

    mcp = commands.add_parser(
        "mcp",
        help="serve MCP over stdio (for Claude Code, Cursor, VS Code)",
        description="Serve the sora-relay MCP tools over stdio; each tool call is an API request with your key.",
    )
    mcp.add_argument(
        "--pending-wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long sora_get_task waits on a pending task before answering (default: 5)",
    )
    _add_global_options(mcp, on_subcommand=True)
    return parser


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=_positive_float, default=2.0, metavar="SECONDS", help="poll interval (default: 2)"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=900.0,
        metavar="SECONDS",
        help="give up after (default: 900)",
    )


# -- output ----------------------------------------------------------------------------------------


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status_text(video: Video) -> str:
    status = video.get("status", "?")
    progress = video.get("progress")
    return f"{status} ({progress}%)" if progress is not None else str(status)


def _print_json(ctx: Context, obj: Any) -> None:
    print(json.dumps(obj, separators=(",", ":")), file=ctx.out)


def _print_video(ctx: Context, video: Video) -> None:
    if ctx.json:
        _print_json(ctx, video)
        return
    rows: list[tuple[str, Any]] = [
        ("id", video.get("id")),
        ("status", _status_text(video)),
        ("model", video.get("model")),
        ("seconds", video.get("seconds")),
        ("size", video.get("size")),
        ("prompt", video.get("prompt")),
        ("created", video.get("created_at") and _when(video.get("created_at"))),
        ("completed", video.get("completed_at") and _when(video.get("completed_at"))),
        ("expires", video.get("expires_at") and _when(video.get("expires_at"))),
        ("callback", video.get("callback_url")),
    ]
    if video.get("download_url"):
        expires = video.get("download_expires_at")
        suffix = f" (link expires {_when(expires)})" if expires else ""
        rows.append(("download", f"{video['download_url']}{suffix}"))
    error = video.get("error")
    if error:
        rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
    for label, value in rows:
        if value not in (None, ""):
            print(f"{label:<10} {value}", file=ctx.out)


def _print_list(ctx: Context, page: VideoList) -> None:
    if ctx.json:
        _print_json(ctx, page)
        return
    videos = page.get("data") or []
    if not videos:
        print("no videos", file=ctx.out)
    else:
        header = ("ID", "STATUS", "PROGRESS", "CREATED", "MODEL", "SECONDS", "SIZE", "PROMPT")
        rows = [header] + [
            (
                str(v.get("id", "")),
                str(v.get("status", "")),
                f"{v.get('progress', 0)}%",
                _when(v.get("created_at")),
                str(v.get("model", "")),
                str(v.get("seconds", "")),
                str(v.get("size", "")),
                _shorten(str(v.get("prompt", "")), 40),
            )
            for v in videos
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]).rstrip(), file=ctx.out)
    if page.get("has_more") and page.get("last_id"):
        print(f"more: sora-relay list --after {page['last_id']}", file=ctx.out)


def _print_download(ctx: Context, video_id: str, result: Download) -> None:
    if ctx.json:
        _print_json(
            ctx, {"id": video_id, "path": str(result.path), "bytes": result.bytes, "sha256": result.sha256}
        )
    else:
        print(f"wrote {result.path}: {result.bytes} bytes, sha256 {result.sha256}", file=ctx.out)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class ProgressLine:
    """Live progress on stderr (stdout stays clean for results): one rewritten line on a TTY,
    otherwise one line per change so logs stay readable."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last: tuple[Any, Any] | None = None
        self._open = False

    def update(self, video: Video, elapsed: float) -> None:
        state = (video.get("status"), video.get("progress"))
        text = f"{video.get('id', '?')}: {_status_text(video)}"
        if self.tty:
            # \r + erase-line: rewrite in place, with the elapsed time so a stalled task looks alive.
            self.stream.write(f"\r\x1b[2K{text}  {elapsed:.0f}s")
            self.stream.flush()
            self._open = True
        elif state != self._last:
            print(text, file=self.stream, flush=True)
        self._last = state

    def finish(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


# -- commands --------------------------------------------------------------------------------------


def _wait_for(ctx: Context, video_id: str, interval: float, timeout: float) -> Video:
    progress = ProgressLine(ctx.err)
    start = ctx.clock()
    try:
        while True:
            video = ctx.client.get(video_id)
            progress.update(video, ctx.clock() - start)
            if video.get("status") in TERMINAL_STATUSES:
                return video
            remaining = start + timeout - ctx.clock()
            if remaining <= 0:
                raise Failure(
                    f"timed out after {timeout:g}s waiting for {video_id} (last: {_status_text(video)})"
                )
            ctx.sleep(min(interval, remaining))
    finally:
        progress.finish()


def _finish_wait(ctx: Context, video: Video) -> int:
    """Print the terminal video; a failed task is exit 1 with its error on stderr."""
    _print_video(ctx, video)
    if video.get("status") == "failed":
        error = video.get("error") or {}
        detail = f"{error.get('code', 'unknown')}: {error.get('message', 'no details')}"
        print(f"error: video {video.get('id')} failed: {detail}", file=ctx.err)
        return EXIT_FAILED
    return EXIT_OK


def cmd_submit(ctx: Context, args: argparse.Namespace) -> int:
    key = args.idempotency_key or str(uuid.uuid4())
    try:
        video = ctx.client.create(
            args.prompt,
            model=args.model,
            duration=args.duration,
            size=args.size,
            callback_url=args.callback_url,
            image_urls=args.image_urls,
            idempotency_key=key,
        )
    except (ApiError, ApiConnectionError) as exc:
        if isinstance(exc, ApiConnectionError) or exc.transient:
            # The task may have been created before the failure; the same key makes a rerun safe.
            raise Failure(f"{exc} (to retry safely: --idempotency-key {key})") from exc
        raise
    if not (args.wait or args.out):
        _print_video(ctx, video)
        return EXIT_OK
    if not ctx.json:
        print(f"submitted {video.get('id')}", file=ctx.err)
    final = _wait_for(ctx, video["id"], args.interval, args.timeout)
    if final.get("status") != "completed" or not args.out:
        return _finish_wait(ctx, final)
    result = _download(ctx, final["id"], args.out)
    _print_video(ctx, final)
    _print_download(ctx, final["id"], result)
    return EXIT_OK


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    _print_video(ctx, ctx.client.get(args.video_id))
    return EXIT_OK


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    _print_list(ctx, ctx.client.list(limit=args.limit, after=args.after))
    return EXIT_OK


def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    return _finish_wait(ctx, _wait_for(ctx, args.video_id, args.interval, args.timeout))


def cmd_download(ctx: Context, args: argparse.Namespace) -> int:
    _print_download(ctx, args.video_id, _download(ctx, args.video_id, args.out))
    return EXIT_OK


def cmd_mcp(ctx: Context, args: argparse.Namespace) -> int:
    # Imported here: the other commands do not pay for the MCP SDK's imports.
    from sora_relay_cli.mcp import serve_stdio

    try:
        serve_stdio(ctx.client, pending_wait_seconds=max(0.0, args.pending_wait))
    except Exception as exc:  # the catalogue could not be read: say why on stderr
        if isinstance(exc, (ApiError, ApiConnectionError)):
            raise
        raise Failure(f"mcp: {exc}") from exc
    return EXIT_OK


def _download(ctx: Context, video_id: str, out: str) -> Download:
    try:
        return ctx.client.download_to(video_id, out)
    except OSError as exc:
        raise Failure(f"cannot write {out}: {exc.strerror or exc}") from exc


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "status": cmd_status,
    "list": cmd_list,
    "wait": cmd_wait,
    "download": cmd_download,
    "mcp": cmd_mcp,
}


def main(
    argv: list[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI and return its exit code; the keyword arguments are seams for tests."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 for --help/--version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    # Read the environment now, not at import, so the defaults follow the caller's environment.
    api_url = args.api_url or os.environ.get(ENV_URL)
    api_key = args.api_key or os.environ.get(ENV_KEY)
    if not api_url:
        print(f"error: no API URL: pass --api-url or set {ENV_URL}", file=err)
        return EXIT_USAGE
    if not api_key:
        print(f"error: no API key: set {ENV_KEY} or pass --api-key", file=err)
        return EXIT_USAGE
    try:
        client = ApiClient(api_url, api_key, transport=transport, sleep=sleep)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE

    ctx = Context(client=client, json=args.json, out=out, err=err, sleep=sleep, clock=clock)
    try:
        with client:
            return COMMANDS[args.command](ctx, args)
    except (ApiError, ApiConnectionError, Failure) as exc:
        # Belt and braces: an error text must never echo the key, whatever the server put in it.
        print(f"error: {exc}".replace(api_key, "***"), file=err)
        return exc.exit_code if isinstance(exc, Failure) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
