"""`make fuzz`: schemathesis' CLI against a fresh local stack, with docs/openapi.yaml (dev-only).

It fails on a 5xx, a 4xx off the error shape, a request let through without a valid key, or fewer
requests than asked (`--strict`: also answers off the document). Nothing leaves 127.0.0.1: no task
finishes and every URL the service would call is pinned there (devstack/fuzz_hooks.py)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from devstack.load import FAST_FUNCTION_ENV, FAST_PARAMETERS
from devstack.processes import eventually, local_http
from devstack.stack import DevStack, aws_environment
from devstack.template import ROOT, secret_value

OPENAPI = ROOT / "docs" / "openapi.yaml"
CONFIG = ROOT / "devstack" / "fuzz.toml"
LOG_DIR = ROOT / ".devstack" / "fuzz-logs"
REPORT = ROOT / ".devstack" / "fuzz" / "report.json"
CHECKS = ["not_a_server_error", "error_shape", "ignored_auth"]
# --strict: answers off the document, valid input refused, invalid input accepted.
STRICT_CHECKS = [f"{part}_conformance" for part in ("status_code", "content_type", "response_headers")]
STRICT_CHECKS += ["response_schema_conformance", "negative_data_rejection", "positive_data_acceptance"]
SEED_DELAY_S = 0.3  # the simulator's callback delay while the seed videos are made
FUZZ_DELAY_S = 3600.0  # ... and while the run fuzzes: no task finishes, nothing is fetched


SEEDS = ("a completed video", "a failed video [sim:fail]", "a lost callback [sim:no-callback]")


def make_seed_videos(stack: DevStack) -> list[str]:
    """A completed (twice: only its content is a 302), a failed, an in-progress and another key's video."""

    def create(key: str, prompt: str) -> str:
        answer = http.post("/v1/videos", json={"prompt": f"fuzz seed: {prompt}"}, headers={"x-api-key": key})
        if answer.status_code != 202:
            raise RuntimeError(f"seed video not accepted: {answer.status_code} {answer.text}")
        return str(answer.json()["id"])

    def status(video_id: str) -> str:
        return str(http.get(f"/v1/videos/{video_id}", headers={"x-api-key": stack.api_key}).json()["status"])

    with local_http(stack.api_url) as http:
        completed, failed, lost = (create(stack.api_key, prompt) for prompt in SEEDS)
        other = create(stack.other_api_key, "another owner's video")
        eventually(lambda: status(completed) == "completed", timeout=60, what="the completed seed video")
        eventually(lambda: status(failed) == "failed", timeout=60, what="the failed seed video")
    return [completed, completed, failed, lost, other]


def run_schemathesis(stack: DevStack, *, requests: int, seed: int, strict: bool) -> int:
    """`st run` in this process (its hooks need the stack's keys); its exit code."""
    import schemathesis
    from schemathesis.cli import schemathesis as st

    operations = sum(1 for _ in schemathesis.openapi.from_path(OPENAPI).get_all_operations())
    # Fuzzing sends about `max_examples` per operation, stateful a little more, coverage a few
    # hundred: half the budget per operation reaches it with a margin.
    max_examples = max(1, math.ceil(requests / (2 * operations)))
    assert stack.stack is not None and stack.simulator is not None
    with aws_environment(stack.moto_url):  # it puts os.environ back as it found it on exit: set it after
        callback_key = secret_value(stack.stack, "CallbackTokenSecret")
    os.environ["FUZZ_CALLBACK_KEY"] = callback_key
    os.environ["FUZZ_API_KEY"] = stack.api_key
    os.environ["FUZZ_VIDEO_IDS"] = ",".join(make_seed_videos(stack))
    stack.simulator.config.callback_delay_s = FUZZ_DELAY_S
    arguments = ["--config-file", str(CONFIG), "run", str(OPENAPI), "--url", stack.api_url]
    arguments += ["--checks", ",".join(CHECKS + (STRICT_CHECKS if strict else []))]
    arguments += ["--max-examples", str(max_examples), "--seed", str(seed)]
    arguments += ["--report", "json", "--report-json-path", str(REPORT)]
    try:
        st.main(arguments, prog_name="st", standalone_mode=False)
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests to send at least (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="schemathesis' seed (default 1)")
    parser.add_argument("--strict", action="store_true", help="also fail on answers off the document")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    started = time.monotonic()
    REPORT.unlink(missing_ok=True)
    os.chdir(ROOT)  # fuzz.toml's cache directory is relative
    ports = dict.fromkeys(("moto_port", "simulator_port", "gateway_port"), 0)
    stack = DevStack(**ports, callback_delay=SEED_DELAY_S, log_dir=LOG_DIR, function_env=FAST_FUNCTION_ENV)
    stack.parameters |= FAST_PARAMETERS
    try:
        stack.start()
        print(f"sora-relay fuzz: local stack up in {time.monotonic() - started:.1f} s at {stack.api_url}")
        code = run_schemathesis(stack, requests=args.requests, seed=args.seed, strict=args.strict)
    except KeyboardInterrupt:
        print("fuzz interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    # One request per test case (and a few more for the checks' probes).
    sent = json.loads(REPORT.read_text())["test_cases"]["generated"] if REPORT.exists() else 0
    print(f"requests      {sent} test cases sent, at least {args.requests} wanted")
    code = code or int(sent < args.requests)
    print(f"elapsed       {time.monotonic() - started:.1f} s; logs: {LOG_DIR.relative_to(ROOT)}/")
    print("fuzz FAILED" if code else "fuzz OK")
    return code


if __name__ == "__main__":
    sys.exit(main())
