#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: FFmpeg's shared libraries (for
# torchcodec), a virtualenv in .venv and the pinned packages. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q libavcodec; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "FFmpeg's libraries are missing: run 'sudo apt-get install ffmpeg' (needed for audio decoding)" >&2
    exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
