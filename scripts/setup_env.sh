#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, as a user would: FFmpeg's shared libraries (for
# torchcodec), a virtualenv in .venv, the pinned packages of requirements.txt, then the package itself
# (`pip install .`, giving the `pop-rok` command). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES="ffmpeg fluidsynth fluid-soundfont-gm"  # FFmpeg for torchcodec; a GM soundfont renders the analysis tests' kits
missing=""
for package in $APT_PACKAGES; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "missing Debian packages:$missing: run 'sudo apt-get install$missing'" >&2
    exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q -c requirements.txt ".[audio,training]"
