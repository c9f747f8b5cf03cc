"""devstack.worker's opt-in measuring: a cProfile file and AWS call counts per process.

The worker runs as its pool runs it (a subprocess speaking JSON lines), with a tiny
handler that makes one botocore call to a closed port (counted even though it fails).
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANDLER = """
import botocore.session
from botocore.config import Config


def busy(n):
    return sum(i * i for i in range(n))


def lambda_handler(event, context):
    if event.get("aws"):
        client = botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, connect_timeout=0.5, read_timeout=0.5),
        )
        try:
            client.list_buckets()
        except Exception:
            pass
    return {"sum": busy(20000)}
"""


def run_worker(code_dir: Path, extra_env: dict[str, str], events: list[dict]) -> list[dict]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": str(ROOT),
        "_HANDLER": "app.lambda_handler",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra_env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.worker", "TestFunction"],
        cwd=code_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    replies = [json.loads(process.stdout.readline())]
    for number, event in enumerate(events):
        process.stdin.write(json.dumps({"event": event, "request_id": f"r{number}", "deadline_ms": 0}) + "\n")
        process.stdin.flush()
        replies.append(json.loads(process.stdout.readline()))
    process.stdin.close()  # end of input: the worker writes its files and exits
    assert process.wait(timeout=30) == 0
    return replies  # type: ignore[return-value]


def test_worker_writes_a_profile_and_call_counts(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    profiles, stats = tmp_path / "profiles", tmp_path / "stats"

    replies = run_worker(
        code,
        {
            "DEVSTACK_PROFILE_DIR": str(profiles),
            "DEVSTACK_STATS_DIR": str(stats),
            "DEVSTACK_PROFILE_CLOCK": "cpu",
        },
        [{"aws": True}, {}],
    )

    assert replies[0]["type"] == "ready"
    assert [reply["ok"] for reply in replies[1:]] == [True, True]
    (profile,) = profiles.glob("TestFunction.*.prof")
    functions = {name for (_, _, name) in pstats.Stats(str(profile)).stats}  # type: ignore[attr-defined]
    assert {"lambda_handler", "busy"} <= functions
    (counts,) = stats.glob("TestFunction.*.json")
    recorded = json.loads(counts.read_text())
    assert recorded["function_id"] == "TestFunction"
    assert recorded["invocations"] == 2
    assert recorded["api_calls"] == {"s3:ListBuckets": 1}


def test_worker_measures_nothing_unless_asked(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)

    replies = run_worker(code, {}, [{}])

    assert replies[1] == {"ok": True, "result": {"sum": sum(i * i for i in range(20000))}}
    assert not [path for path in tmp_path.rglob("*") if path.suffix in (".prof", ".json")]
