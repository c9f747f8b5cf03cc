#!/usr/bin/env bash
# Print the absolute path of a working python3.12 (Lambda's runtime version), or exit 1.
# Looks on PATH first, then in pyenv (TOOLING.md: pyenv holds 3.12 off PATH).
set -euo pipefail

real_path() { "$1" -c 'import sys; print(sys.executable)' 2>/dev/null; }

if p=$(real_path python3.12) && [[ -n $p ]]; then
  echo "$p"
  exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.[0-9]+$' | sort -V | tail -n 1 || true)
  if [[ -n $v ]] && p=$(PYENV_VERSION=$v pyenv exec python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null); then
    echo "$p"
    exit 0
  fi
fi
echo "python3.12 not found (on PATH or in pyenv)" >&2
exit 1
