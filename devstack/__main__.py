"""`python -m devstack run` (the local stack until Ctrl-C), `demo` (one video, end to end, checked)
and `load` (many tasks at once with faults on, devstack.load), dev-only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from devstack.load import (
    FAST_PARAMETERS,
    FAST_SCHEDULE_SECONDS,
    FAST_VISIBILITY_SECONDS,
    LOAD_FUNCTION_ENV,
    LoadRunner,
    add_crashes,
)
from devstack.receiver import WebhookReceiver
from devstack.stack import DEFAULT_LOG_DIR, DevStack
from devstack.template import ROOT

DEMO_PROMPT = "A paper boat drifting down a rainy street at dusk, cinematic"
# The default live model (DefaultModel), at a length and size it offers.
DEMO_MODEL, DEMO_DURATION, DEMO_SIZE = "veo-3.1-fast", 8, "1280x720"


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the process like Ctrl-C, so `finally` blocks stop every child.

    SIGINT is set explicitly too: a shell starts background jobs with it ignored, and then
    `kill -INT` would leave the stack running.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def cli_command() -> list[str]:
    """The `sora-relay` console script of this environment (or the module if it is missing)."""
    script = Path(sys.executable).with_name("sora-relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sora_relay_cli.main"]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- run -------------------------------------------------------------------------------------------


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
    try:
        stack.start()
        _print_banner(stack, args)
        threading.Event().wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        print("\nstopping the local stack ...", file=sys.stderr)
    finally:
        stack.stop()
    return 0


def _print_banner(stack: DevStack, args: argparse.Namespace) -> None:
    assert stack.simulator is not None
    prompt = "A paper boat drifting down a rainy street at dusk"
    body = json.dumps({"prompt": prompt, "size": "1280x720"})  # the default model and its length
    url, key = shlex.quote(stack.api_url), shlex.quote(stack.api_key)
    curl = f"curl -sS -X POST {shlex.quote(stack.api_url + '/v1/videos')} -H {shlex.quote('x-api-key: ' + stack.api_key)}"
    curl += f" -H 'content-type: application/json' -d {shlex.quote(body)}"
    cli = f"SORA_RELAY_API_URL={url} SORA_RELAY_API_KEY={key} sora-relay submit {shlex.quote(prompt)} --wait --out video.mp4"
    logs = "this console (--verbose)" if args.verbose else f"{_relative(DEFAULT_LOG_DIR)}/"
    consumers = ", ".join(source.description for source in stack.event_sources)
    print(
        f"""sora-relay local stack is up (Ctrl-C stops it)

  API URL          {stack.api_url}
  playground       {stack.api_url}/   (open it and paste the API key below)
  API key          {stack.api_key}   (tenant {stack.tenant_id}, key {stack.api_key_id})
  second API key   {stack.other_api_key}   (tenant {stack.other_tenant_id}, key {stack.other_api_key_id})
                   either as `Authorization: Bearer <key>` or `x-api-key: <key>`;
                   more tenants and keys: make tenants ARGS="create --name N" (scripts/tenants.py)
  webhook secrets  {stack.tenants[0].webhook_secret}   (the first tenant's tasks)
                   {stack.tenants[1].webhook_secret}   (the second tenant's)
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

{_mcp_configs(stack)}""",
        flush=True,
    )


def _mcp_configs(stack: DevStack) -> str:
    """Ready MCP client configurations for both transports (docs/mcp.md explains them)."""
    url, key = f"{stack.api_url}/mcp", stack.api_key
    command, *args = cli_command()
    env = {"SORA_RELAY_API_URL": stack.api_url, "SORA_RELAY_API_KEY": key}
    remote = {"mcpServers": {"sora-relay": {"type": "http", "url": url, "headers": {"x-api-key": key}}}}
    local = {
        "mcpServers": {
            "sora-relay": {"type": "stdio", "command": command, "args": [*args, "mcp"], "env": env}
        }
    }
    vscode = {"servers": {"sora-relay": {"type": "http", "url": url, "headers": {"x-api-key": key}}}}
    claude_http = f"claude mcp add --transport http sora-relay {shlex.quote(url)} --header {shlex.quote(f'x-api-key: {key}')}"
    claude_stdio = " ".join(
        ["claude mcp add sora-relay"]
        + [f"-e {name}={shlex.quote(value)}" for name, value in env.items()]
        + ["--", shlex.join([command, *args, "mcp"])]
    )
    return f"""MCP (docs/mcp.md): remote {url}, or stdio `sora-relay mcp`
  Claude Code, remote:  {claude_http}
  Claude Code, stdio:   {claude_stdio}
  Cursor (.cursor/mcp.json), remote:
{json.dumps(remote, indent=2)}
  Cursor, stdio:
{json.dumps(local, indent=2)}
  VS Code (.vscode/mcp.json), remote:
{json.dumps(vscode, indent=2)}
"""


# -- demo ------------------------------------------------------------------------------------------


class DemoFailed(Exception):
    pass


def probe_mp4(path: Path) -> dict[str, Any]:
    """Open the file with PyAV and decode every frame: a real, playable MP4 or an exception."""
    import av  # heavy; only the demo needs it

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        seconds = float(container.duration / av.time_base) if container.duration else 0.0
        context = stream.codec_context
        return {
            "seconds": seconds,
            "width": context.width,
            "height": context.height,
            "codec": context.name,
            "frames": frames,
        }


def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    print("sora-relay demo: the local stack, the sora-relay CLI and a webhook receiver", flush=True)
    stack = DevStack(callback_delay=args.delay, console_logs=args.verbose)
    try:
        stack.start()
        print(f"  stack up in {time.monotonic() - started:.1f} s at {stack.api_url}", flush=True)
        # The CLI's key is the first tenant's: its webhooks are signed with that tenant's secret.
        with WebhookReceiver(stack.tenants[0].webhook_secret) as receiver:
            summary = _demo_flow(stack, receiver, args.prompt, out)
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # DemoFailed, or the stack itself did not come up, or broke
        detail = str(error) if isinstance(error, DemoFailed) else f"{type(error).__name__}: {error}"
        print(f"demo FAILED: {detail}", file=sys.stderr)
        if not args.verbose:
            print(f"  (function, API and moto logs: {_relative(DEFAULT_LOG_DIR)}/)", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    for label, value in [*summary, ("elapsed", f"{time.monotonic() - started:.1f} s")]:
        print(f"  {label:<9} {value}")
    print("demo OK")
    return 0


def _demo_flow(stack: DevStack, receiver: WebhookReceiver, prompt: str, out: Path) -> list[tuple[str, str]]:
    options = [
        "--model",
        DEMO_MODEL,
        "--duration",
        str(DEMO_DURATION),
        "--size",
        DEMO_SIZE,
        "--callback-url",
        receiver.url,
        "--wait",
    ]
    options += ["--interval", "0.5", "--timeout", "45", "--out", str(out), "--json"]
    print(f"  $ {shlex.join(['sora-relay', 'submit', prompt, *options])}", flush=True)
    env = {**os.environ, "SORA_RELAY_API_URL": stack.api_url, "SORA_RELAY_API_KEY": stack.api_key}
    try:
        done = subprocess.run(
            [*cli_command(), "submit", prompt, *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DemoFailed("the CLI did not finish within 60 s") from error
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DemoFailed(f"the CLI exited {done.returncode}: {detail}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    video = next((line for line in lines if line.get("object") == "video"), None)
    download = next((line for line in lines if "sha256" in line and "path" in line), None)
    if video is None or download is None:
        raise DemoFailed(f"unexpected CLI output: {done.stdout.strip()[:300]}")

    problems: list[str] = []
    if video.get("status") != "completed":
        problems.append(f"status is {video.get('status')}, not completed")
    # The file: a real MP4 of the requested shape, byte for byte what the service archived.
    data = out.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    item = stack.task_item(video["id"]) or {}
    if digest != item.get("video_sha256") or digest != download["sha256"]:
        problems.append(
            f"sha256 {digest} differs from the stored {item.get('video_sha256')} or the CLI's {download['sha256']}"
        )
    try:
        mp4 = probe_mp4(out)
    except Exception as error:
        raise DemoFailed(f"{out} is not a playable MP4: {error}") from error
    shape = f"{mp4['seconds']:.2f} s, {mp4['width']}x{mp4['height']}"
    if f"{mp4['width']}x{mp4['height']}" != DEMO_SIZE or abs(mp4["seconds"] - DEMO_DURATION) > 0.5:
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
        ("mp4", f"{shape}, {mp4['codec']}, {mp4['frames']} frames"),
        ("webhook", f"{event.get('type')} {delivery.headers.get('webhook-id')}, verified: {verified}"),
        ("file", _relative(out)),
    ]


# -- load ------------------------------------------------------------------------------------------


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
        function_env=LOAD_FUNCTION_ENV,
        parameters=FAST_PARAMETERS,
        schedule_interval_s=FAST_SCHEDULE_SECONDS,
        aws_fault_rate=args.aws_fault_rate,
        aws_faults=args.crash_rate > 0,
        queue_visibility_timeout_s=FAST_VISIBILITY_SECONDS,
    )
    try:
        stack.start()
        if args.crash_rate > 0:
            add_crashes(stack, args.crash_rate)
        # The load runs with the first tenant's key: its webhooks carry that tenant's signatures.
        with WebhookReceiver(stack.tenants[0].webhook_secret) as receiver:
            runner = LoadRunner(
                stack,
                receiver,
                concurrency=args.concurrency,
                settle_timeout=args.timeout,
                progress=lambda line: print(line, flush=True),
            )
            try:
                report = runner.run(args.tasks)
            finally:
                runner.close()
    except KeyboardInterrupt:
        print("load run interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="sora-relay's local stack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="function and API logs on the console")
    delay = argparse.ArgumentParser(add_help=False)
    delay.add_argument("--delay", type=float, default=1.0, help="seconds until the provider calls back")
    workers = argparse.ArgumentParser(add_help=False)
    workers.add_argument("--workers", type=int, default=4, help="instances per function (default 4)")

    run_parser = commands.add_parser(
        "run", parents=[common, delay, workers], help="start the local stack and keep it running until Ctrl-C"
    )
    run_parser.add_argument(
        "--late-delay", type=float, default=6.0, help="seconds until a [sim:late-callback] arrives"
    )

    demo_parser = commands.add_parser(
        "demo", parents=[common, delay], help="generate one video end to end and check everything"
    )
    demo_parser.add_argument("--prompt", default=DEMO_PROMPT)
    demo_parser.add_argument("--out", default=str(ROOT / ".devstack" / "demo.mp4"), help="where the MP4 goes")

    load_parser = commands.add_parser(
        "load",
        parents=[common, workers],
        help="submit many tasks at once with faults on; print lost, duplicates, throughput",
    )
    load_parser.add_argument("--tasks", type=int, default=1000)
    load_parser.add_argument("--concurrency", type=int, default=300, help="submits in flight at once")
    load_parser.add_argument(
        "--aws-fault-rate", type=float, default=0.2, help="share of DynamoDB and S3 calls that fail (0 = off)"
    )
    load_parser.add_argument(
        "--crash-rate",
        type=float,
        default=0.02,
        help="share of the calls at each crash point that kill the worker (at most 10 each; 0 = off)",
    )
    load_parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for every task")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_signals()
    return {"run": run, "demo": demo, "load": load}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
