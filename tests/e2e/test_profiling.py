"""LocalStack(moto_profile=...): moto's server profiles the requests it serves and writes the
merged profile when it is stopped (bench/throughput.py reads it)."""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import boto3

from devstack.processes import stop_process
from devstack.stack import _MOTO_BOOT, _MOTO_PROFILE_BOOT, FAKE_AWS, HOST, free_port, wait_listening


def test_moto_server_writes_its_profile_on_stop(tmp_path: Path) -> None:
    profile = tmp_path / "moto.prof"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    env.update(FAKE_AWS)
    env.update(
        DEVSTACK_PARENT_PID=str(os.getpid()),
        DEVSTACK_MOTO_PROFILE=str(profile),
        DEVSTACK_MOTO_PROFILE_BOOT=_MOTO_PROFILE_BOOT,
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO_BOOT, "-H", HOST, "-p", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_listening(port, server, time.monotonic() + 60)
        s3 = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).client("s3", endpoint_url=f"http://{HOST}:{port}")
        s3.create_bucket(Bucket="profiled")
        assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["profiled"]
    finally:
        stop_process(server)  # SIGTERM: the server writes the profile, then exits

    assert server.returncode == 0
    stats = pstats.Stats(str(profile))
    files = {filename for (filename, _, _) in stats.stats}  # type: ignore[attr-defined]
    assert any("/moto/s3/" in filename for filename in files)
