"""docs/providers.md's model table is the catalogue's (scripts/providers_doc.py --check)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_providers_page_matches_the_catalogue() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "providers_doc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
