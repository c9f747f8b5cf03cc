"""DevStack(moto_profile=...): moto's server profiles the requests it serves and writes the
merged profile when it is stopped (bench/throughput.py reads it)."""

from __future__ import annotations

import pstats
from pathlib import Path

from devstack.fake_aws import moto_client, moto_server


def test_moto_server_writes_its_profile_on_stop(tmp_path: Path) -> None:
    profile = tmp_path / "moto.prof"
    with moto_server(60, profile=profile) as endpoint:
        s3 = moto_client("s3", endpoint)
        s3.create_bucket(Bucket="profiled")
        assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["profiled"]
        assert not profile.exists()  # written on SIGTERM, not before
    # Leaving the block stopped the server (SIGTERM): it wrote the profile, then exited.
    stats = pstats.Stats(str(profile))
    files = {filename for (filename, _, _) in stats.stats}  # type: ignore[attr-defined]
    assert any("/moto/s3/" in filename for filename in files)
