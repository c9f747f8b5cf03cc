"""`python -m devstack run` (the local stack until Ctrl-C), `demo` (one video, end to end, checked)
and `load` (many tasks at once with faults on, devstack.load), dev-only."""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import load as loadrun
from devstack.receiver import WebhookReceiver
from devstack.stack import DEFAULT_LOG_DIR, DevStack
from devstack.template import ROOT

DEMO_PROMPT = "A paper boat drifting down a rainy street at dusk, cinematic"
# The default live model (DefaultModel), at a length and size it offers.
DEMO_MODEL, DEMO_DURATION, DEMO_SIZE = "veo-3.1-fast", 8, "1280x720"


class DemoFailed(Exception):
    pass


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM, SIGHUP (and SIGINT, which a shell's background jobs ignore) end the process like
    Ctrl-C, so `finally` blocks stop every child."""
    raise KeyboardInterrupt


def cli_command() -> list[str]:
    """The `sora-relay` console script of this environment (or the module if it is missing)."""
    script = Path(sys.executable).with_name("sora-relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sora_relay_cli.main"]


def _relative(path: Path) -> str:
    return (
        str(path.resolve().relative_to(Path.cwd()))
        if path.resolve().is_relative_to(Path.cwd())
        else str(path)
    )


def _with_stack(stack: DevStack, what: str, verbose: bool, job: Any, *, receiver: bool = True) -> int:
    """Start the stack, run `job` with it and a receiver of the first tenant's webhooks (the key
    the CLI and the load use), stop it: the exit status, the failure said in one line."""
    try:
        stack.start()
        if not receiver:
            return job(None)
        with WebhookReceiver(stack.tenants[0].webhook_secret) as webhooks:
            return job(webhooks)
    except KeyboardInterrupt:
        print(f"{what} interrupted" if receiver else "\nstopping the local stack ...", file=sys.stderr)
        return 130 if receiver else 0
    except Exception as error:  # DemoFailed, or the stack itself did not come up, or broke
        detail = str(error) if isinstance(error, DemoFailed) else f"{type(error).__name__}: {error}"
        print(f"{what} FAILED: {detail}", file=sys.stderr)
        if not verbose:
            print(f"  (function, API and moto logs: {_relative(DEFAULT_LOG_DIR)}/)", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def run(args: argparse.Namespace) -> int:
    if args.verbose:  # the simulator logs each request and callback: its logger, not every library's
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[simulator] %(message)s"))
        logging.getLogger("devstack.simulator").addHandler(handler)
        logging.getLogger("devstack.simulator").setLevel(logging.INFO)
    stack = DevStack(
        callback_delay=args.delay,
        late_callback_delay=args.late_delay,
        workers=args.workers,
        console_logs=args.verbose,
    )

    def job(_: None) -> int:
        _print_banner(stack, args)
        threading.Event().wait()  # until Ctrl-C or SIGTERM
        return 0

    return _with_stack(stack, "run", args.verbose, job, receiver=False)


def _print_banner(stack: DevStack, args: argparse.Namespace) -> None:
    assert stack.simulator is not None
    prompt = "A paper boat drifting down a rainy street at dusk"
    body = json.dumps({"prompt": prompt, "size": "1280x720"})  # the default model and its length
    url, key, quote = stack.api_url, stack.api_key, shlex.quote
    curl = f"curl -sS -X POST {quote(url + '/v1/videos')} -H {quote('x-api-key: ' + key)}"
    curl += f" -H 'content-type: application/json' -d {quote(body)}"
    cli = f"SORA_RELAY_API_URL={quote(url)} SORA_RELAY_API_KEY={quote(key)} sora-relay submit {quote(prompt)} --wait --out video.mp4"
    logs = "this console (--verbose)" if args.verbose else f"{_relative(DEFAULT_LOG_DIR)}/"
    consumers = ", ".join(source.description for source in stack.event_sources)
    first, second = stack.tenants
    print(
        f"""sora-relay local stack is up (Ctrl-C stops it)

  API URL          {url}
  playground       {url}/   (open it and paste the API key below)
  API key          {key}   (tenant {stack.tenant_id}, key {stack.api_key_id})
  second API key   {stack.other_api_key}   (tenant {stack.other_tenant_id}, key {stack.other_api_key_id})
                   either as `Authorization: Bearer <key>` or `x-api-key: <key>`;
                   more tenants and keys: make tenants ARGS="create --name N" (scripts/tenants.py)
  webhook secrets  {first.webhook_secret}   (the first tenant's tasks)
                   {second.webhook_secret}   (the second tenant's)
                   {stack.webhook_secret}   (owners that are no tenant: SQS submissions)
  provider sim     {stack.simulator.url}   (callback after {args.delay:g} s; prompt markers such as
                   [sim:fail] [sim:no-callback] [sim:double-callback] [sim:late-callback]
                   [sim:video-404] [sim:429] [sim:500] [sim:429x2] inject faults)
  AWS (moto)       {stack.moto_url}
  queue consumers  {consumers or "none"}
  logs             {logs}

Create a video:
  {curl}

Or with the CLI:
  {cli}

{_mcp_configs(url, key)}""",
        flush=True,
    )


def _mcp_configs(api_url: str, key: str) -> str:
    """Ready MCP client configurations for both transports (docs/mcp.md explains them)."""
    url, (command, *args) = f"{api_url}/mcp", cli_command()
    env = {"SORA_RELAY_API_URL": api_url, "SORA_RELAY_API_KEY": key}
    http = {"sora-relay": {"type": "http", "url": url, "headers": {"x-api-key": key}}}
    stdio = {"sora-relay": {"type": "stdio", "command": command, "args": [*args, "mcp"], "env": env}}
    claude_http = f"claude mcp add --transport http sora-relay {shlex.quote(url)} --header {shlex.quote(f'x-api-key: {key}')}"
    claude_env = " ".join(f"-e {name}={shlex.quote(value)}" for name, value in env.items())
    claude_stdio = f"claude mcp add sora-relay {claude_env} -- {shlex.join([command, *args, 'mcp'])}"
    return f"""MCP (docs/mcp.md): remote {url}, or stdio `sora-relay mcp`
  Claude Code, remote:  {claude_http}
  Claude Code, stdio:   {claude_stdio}
  Cursor (.cursor/mcp.json), remote:
{json.dumps({"mcpServers": http}, indent=2)}
  Cursor, stdio:
{json.dumps({"mcpServers": stdio}, indent=2)}
  VS Code (.vscode/mcp.json), remote:
{json.dumps({"servers": http}, indent=2)}
"""


@dataclass(frozen=True)
class Mp4Info:
    seconds: float
    width: int
    height: int
    frames: int
    codec: str


def probe_mp4(data: bytes) -> Mp4Info:
    """Decode every frame with PyAV: the bytes are a real, playable MP4 (or an exception)."""
    import av  # heavy; only the demo and the e2e tests need it

    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        seconds = float(container.duration / av.time_base) if container.duration else 0.0
        context = stream.codec_context
        return Mp4Info(seconds, context.width, context.height, frames, context.name)


def demo(args: argparse.Namespace) -> int:
    started, out = time.monotonic(), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    print("sora-relay demo: the local stack, the sora-relay CLI and a webhook receiver", flush=True)
    stack = DevStack(callback_delay=args.delay, console_logs=args.verbose)

    def job(receiver: WebhookReceiver) -> int:
        print(f"  stack up in {time.monotonic() - started:.1f} s at {stack.api_url}", flush=True)
        summary = _demo_flow(stack, receiver, args.prompt, out)
        for label, value in [*summary, ("elapsed", f"{time.monotonic() - started:.1f} s")]:
            print(f"  {label:<9} {value}")
        print("demo OK")
        return 0

    return _with_stack(stack, "demo", args.verbose, job)


def _demo_flow(stack: DevStack, receiver: WebhookReceiver, prompt: str, out: Path) -> list[tuple[str, str]]:
    options = ["--model", DEMO_MODEL, "--duration", str(DEMO_DURATION), "--size", DEMO_SIZE]
    options += ["--callback-url", receiver.url, "--wait", "--interval", "0.5", "--timeout", "45"]
    options += ["--out", str(out), "--json"]
    print(f"  $ {shlex.join(['sora-relay', 'submit', prompt, *options])}", flush=True)
    env = {**os.environ, "SORA_RELAY_API_URL": stack.api_url, "SORA_RELAY_API_KEY": stack.api_key}
    try:
        command = [*cli_command(), "submit", prompt, *options]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as error:
        raise DemoFailed("the CLI did not finish within 60 s") from error
    if done.returncode != 0:
        raise DemoFailed(
            f"the CLI exited {done.returncode}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
        )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    video = next((line for line in lines if line.get("object") == "video"), None)
    download = next((line for line in lines if "sha256" in line and "path" in line), None)
    if video is None or download is None:
        raise DemoFailed(f"unexpected CLI output: {done.stdout.strip()[:300]}")
    problems = (
        [] if video.get("status") == "completed" else [f"status is {video.get('status')}, not completed"]
    )
    # The file: a real MP4 of the requested shape, byte for byte what the service archived.
    data = out.read_bytes()
    digest, item = hashlib.sha256(data).hexdigest(), stack.task_item(video["id"]) or {}
    if digest != item.get("video_sha256") or digest != download["sha256"]:
        problems.append(
            f"sha256 {digest} differs from the stored {item.get('video_sha256')} or the CLI's {download['sha256']}"
        )
    try:
        mp4 = probe_mp4(data)
    except Exception as error:
        raise DemoFailed(f"{out} is not a playable MP4: {error}") from error
    shape = f"{mp4.seconds:.2f} s, {mp4.width}x{mp4.height}"
    if f"{mp4.width}x{mp4.height}" != DEMO_SIZE or abs(mp4.seconds - DEMO_DURATION) > 0.5:
        problems.append(f"the MP4 is {shape}, not what was asked")
    # The webhook: delivered, and verifiable by a client with the standardwebhooks library.
    try:
        delivery = receiver.wait_for_video(video["id"], timeout=15)
    except TimeoutError as error:
        raise DemoFailed("no webhook arrived within 15 s") from error
    try:
        event, verified = receiver.verify(delivery), "yes"
    except Exception as error:  # standardwebhooks raises its own WebhookVerificationError
        event, verified = {}, f"NO ({error})"
        problems.append(f"the webhook did not verify: {error}")
    if event and event.get("type") != "video.completed":
        problems.append(f"the webhook's event type is {event.get('type')}")
    if problems:
        raise DemoFailed("; ".join(problems))
    return [
        ("task", video["id"]),
        ("status", str(video["status"])),
        ("bytes", f"{len(data)} (stored: {item.get('video_bytes')})"),
        ("sha256", f"{digest} (matches DynamoDB: yes)"),
        ("mp4", f"{shape}, {mp4.codec}, {mp4.frames} frames"),
        ("webhook", f"{event.get('type')} {delivery.headers.get('webhook-id')}, verified: {verified}"),
        ("file", _relative(out)),
    ]


def load(args: argparse.Namespace) -> int:
    print(
        f"sora-relay load run: {args.tasks} tasks, {args.concurrency} at once, simulator faults on,"
        f" AWS fault rate {args.aws_fault_rate:g}, worker crash rate {args.crash_rate:g}",
        flush=True,
    )
    stack = DevStack(
        moto_port=0,
        simulator_port=0,
        gateway_port=0,
        late_callback_delay=3.0,
        workers=args.workers,
        console_logs=args.verbose,
        function_env=loadrun.LOAD_FUNCTION_ENV,
        parameters=loadrun.FAST_PARAMETERS,
        schedule_interval_s=loadrun.FAST_SCHEDULE_SECONDS,
        aws_fault_rate=args.aws_fault_rate,
        aws_faults=args.crash_rate > 0,
        queue_visibility_timeout_s=loadrun.FAST_VISIBILITY_SECONDS,
    )

    def job(receiver: WebhookReceiver) -> int:
        if args.crash_rate > 0:
            loadrun.add_crashes(stack, args.crash_rate)
        runner = loadrun.LoadRunner(
            stack,
            receiver,
            concurrency=args.concurrency,
            settle_timeout=args.timeout,
            progress=functools.partial(print, flush=True),
        )
        try:
            report = runner.run(args.tasks)
        finally:
            runner.close()
        print("\n".join(report.lines()))
        return 0 if report.ok else 1

    return _with_stack(stack, "load run", args.verbose, job)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="sora-relay's local stack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, delay: bool = True, workers: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--verbose", action="store_true", help="function and API logs on the console")
        if delay:
            sub.add_argument("--delay", type=float, default=1.0, help="seconds until the provider calls back")
        if workers:
            sub.add_argument("--workers", type=int, default=4, help="instances per function (default 4)")
        return sub

    run = command("run", "start the local stack and keep it running until Ctrl-C")
    run.add_argument(
        "--late-delay", type=float, default=6.0, help="seconds until a [sim:late-callback] arrives"
    )
    demo = command("demo", "generate one video end to end and check everything", workers=False)
    demo.add_argument("--prompt", default=DEMO_PROMPT)
    demo.add_argument("--out", default=str(ROOT / ".devstack" / "demo.mp4"), help="where the MP4 goes")
    load = command(
        "load", "submit many tasks at once with faults on; print lost, duplicates, throughput", delay=False
    )
    load.add_argument("--tasks", type=int, default=1000)
    load.add_argument("--concurrency", type=int, default=300, help="submits in flight at once")
    load.add_argument(
        "--aws-fault-rate", type=float, default=0.2, help="share of DynamoDB and S3 calls that fail (0 = off)"
    )
    load.add_argument(
        "--crash-rate",
        type=float,
        default=0.02,
        help="share of the calls at each crash point that kill the worker (at most 10 each; 0 = off)",
    )
    load.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for every task")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    return {"run": run, "demo": demo, "load": load}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
