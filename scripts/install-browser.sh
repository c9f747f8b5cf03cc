#!/usr/bin/env bash
# The playground's browser test (tests/e2e/test_playground.py) drives Debian's chromium; it fails,
# never skips, without it, so `make test` installs it first. Playwright's own browser download
# cannot be used here (shared/TOOLING.md). Nothing happens when chromium is already there.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and there is no apt-get: install Debian's chromium package by hand" >&2
  exit 1
fi
SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
