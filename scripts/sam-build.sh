#!/usr/bin/env bash
# Usage: scripts/sam-build.sh ARCH BUILD_DIR   (ARCH: arm64 | x86_64; BUILD_DIR relative to the repo)
#
# `sam build` for Lambda's python3.12 and the given architecture. SAM needs python3.12 on PATH;
# scripts/python312.sh finds one (PATH or pyenv). Without any, falls back to TOOLING.md's
# `pip install --platform ...` for the common and media layers alone: enough for
# scripts/check_layer.py's wheel checks, not for a deploy (the functions are not built). PyAV has
# only manylinux_2_28 wheels, so the media layer asks for that platform (pip also takes older tags).
set -euo pipefail
arch=$1 build_dir=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
sam=${SAM:-$root/.tools-venv/bin/sam}
case $arch in
  arm64) platform=manylinux2014_aarch64 ;;
  x86_64) platform=manylinux2014_x86_64 ;;
  *) echo "unknown architecture: $arch" >&2; exit 2 ;;
esac
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

if py312=$("$here/python312.sh"); then
  cd "$root"
  PATH="$(dirname "$py312"):$PATH" "$sam" build \
    --build-dir "$build_dir" --cache-dir "$build_dir-cache" \
    --parameter-overrides "Architecture=$arch"
  exit 0
fi

echo "WARNING: python3.12 missing: building only the layer with pip --platform (no deployable build)" >&2
cd "$root"
rm -rf "$build_dir"
mkdir -p "$build_dir/CommonLayer/python"
"$root/.tools-venv/bin/python" -m pip install -qq --no-compile --no-warn-conflicts \
  --platform "$platform" --implementation cp --python-version 3.12 --only-binary=:all: \
  --target "$build_dir/CommonLayer/python" -r layers/common/requirements.txt
cp -R layers/common/sora_relay "$build_dir/CommonLayer/python/"
# ArchiveFunction's own layer (PyAV, Pillow): check_layer.py checks its wheels and sizes too.
mkdir -p "$build_dir/MediaLayer/python"
"$root/.tools-venv/bin/python" -m pip install -qq --no-compile --no-warn-conflicts \
  --platform "${platform/manylinux2014/manylinux_2_28}" --implementation cp --python-version 3.12 --only-binary=:all: \
  --target "$build_dir/MediaLayer/python" -r layers/media/requirements.txt
find "$build_dir/CommonLayer/python/sora_relay" -name __pycache__ -prune -exec rm -rf {} +
