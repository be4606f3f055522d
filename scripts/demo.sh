#!/usr/bin/env bash
# The main job on the embedded sample: generate POP-ROK-shaped archives, build the dataset, export
# the script-free Parquet copy, load it back with plain `datasets.load_dataset` and print a few rows.
# Everything lands in ./out (nothing is downloaded). The sample writes its labels in many shapes (as the
# real archive might), so validate shows its first-contact report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
$PY pop_rok.py sample out/archives --loops 8 --labels varied   # labels in many shapes: validate reports them
$PY pop_rok.py validate --data-dir out/archives
$PY pop_rok.py build --data-dir out/archives --cache-dir out/cache
$PY pop_rok.py export out/parquet --data-dir out/archives --cache-dir out/cache
$PY pop_rok.py show out/parquet --config default --rows 3
$PY pop_rok.py show out/parquet --config labels --rows 3
