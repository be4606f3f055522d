#!/usr/bin/env bash
# The main job on the embedded sample: generate POP-ROK-shaped archives, build the dataset,
# load it back and print a few rows. Everything lands in ./out (nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
$PY pop_rok.py sample out/archives --loops 8
$PY pop_rok.py build --data-dir out/archives --cache-dir out/cache
