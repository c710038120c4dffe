#!/usr/bin/env bash
# Transcode benchmark: mmsgate's pipeline against vipsthumbnail and raw ffmpeg, same run.
#
#   bench/transcode/run.sh [--runs N] [--profile NAME]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if ! command -v vipsthumbnail >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || { echo "vipsthumbnail is missing: sudo apt-get install libvips-tools" >&2; exit 1; }
    echo "[transcode] installing libvips-tools" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools >&2; }
fi
exec "$ROOT/.venv/bin/python" "$ROOT/bench/transcode/bench.py" "$@"
