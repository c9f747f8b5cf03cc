"""The `sora-relay` CLI as a user runs it: a subprocess talking HTTP to the local stack."""

from __future__ import annotations

import hashlib
import json

import pytest

pytestmark = pytest.mark.e2e


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_submit_wait_out_then_status_list_and_download(stack, cli, tmp_path, unique, probe_mp4):
    # Given a video submitted, waited for and downloaded in one command
    out = tmp_path / "video.mp4"
    prompt = unique("A paper boat on a rainy street")
    submitted = cli(
        "submit", prompt, "--duration", "4", "--size", "1280x720",
        "--wait", "--interval", "0.2", "--timeout", "30", "--out", str(out), "--json",
    )  # fmt: skip

    # Then it printed the completed video and the download, and the file is the archived MP4
    assert submitted.returncode == 0, submitted.stderr
    video, download = _json_lines(submitted.stdout)
    assert video["status"] == "completed"
    assert video["prompt"] == prompt
    data = out.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert download == {"id": video["id"], "path": str(out), "bytes": len(data), "sha256": digest}
    assert digest == stack.task_item(video["id"])["video_sha256"]
    info = probe_mp4(data)
    assert (info.width, info.height) == (1280, 720)
    assert info.seconds == pytest.approx(4, abs=0.3)

    # When the other commands are run against it
    status = cli("status", video["id"], "--json")
    listing = cli("list", "--limit", "100", "--json")
    again = cli("download", video["id"], "--out", str(tmp_path / "again.mp4"), "--json")
    human = cli("status", video["id"])

    # Then they agree
    assert status.returncode == 0, status.stderr
    assert _json_lines(status.stdout)[0]["status"] == "completed"
    assert listing.returncode == 0, listing.stderr
    assert video["id"] in [item["id"] for item in _json_lines(listing.stdout)[0]["data"]]
    assert again.returncode == 0, again.stderr
    assert _json_lines(again.stdout)[0]["sha256"] == digest
    assert "completed (100%)" in human.stdout


def test_a_failed_video_exits_1_with_the_providers_error(stack, cli, unique):
    failed = cli(
        "submit", unique("[sim:fail] A broken reel"), "--wait", "--interval", "0.2", "--timeout", "30"
    )

    assert failed.returncode == 1
    assert "failed: api_error: simulated generation failure" in failed.stderr


def test_a_wrong_api_key_is_reported_without_echoing_it(stack, cli):
    refused = cli("list", api_key="definitely-not-a-key")

    assert refused.returncode == 1
    assert "401" in refused.stderr and "Unauthorized" in refused.stderr
    assert "definitely-not-a-key" not in refused.stderr


def test_another_owners_video_is_not_found_from_the_cli(stack, cli, videos, unique):
    created = videos.create(unique("Someone else's video"))

    other = cli("status", created["id"], api_key=stack.other_api_key)

    assert other.returncode == 1
    assert "404 video_not_found" in other.stderr
