#!/usr/bin/env bash
# Data of the three paper recipes: training sets and benchmarks in verl's parquet format, written to
# ${AERO_DATA_DIR:-data}. Uses the Hugging Face hub when reachable; offline, pass local copies:
#   AERO_LOCAL_DIR=/path/with/<name>.parquet|jsonl  bash recipes/prepare_math_data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${AERO_DATA_DIR:-data}
for name in dapo_math_17k math_train math500 aime24 amc23 minerva olympiadbench; do
  if [[ -n "${AERO_LOCAL_DIR:-}" ]]; then
    local_file=$(ls "$AERO_LOCAL_DIR/$name".* | head -n 1)
    python -m aero_verl.data.prepare --dataset "$name" --out "$out" --source local --local-path "$local_file"
  else
    python -m aero_verl.data.prepare --dataset "$name" --out "$out"
  fi
done
