#!/usr/bin/env bash
# Launch an aero_verl recipe: bash recipes/launch.sh RECIPE [hydra overrides ...]
#   bash recipes/launch.sh aero_qwen1.5b              # one node: a private local Ray
#   NNODES=4 bash recipes/launch.sh aero_qwen1.5b     # a Ray cluster started beforehand (recipes/README.md)
# The recipes and their GRPO twins are the table in recipes/README.md. A relaunch of the identical command
# resumes from its own checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: bash recipes/launch.sh RECIPE [hydra overrides ...]}; shift
nodes=${NNODES:-1}
extra=()
if (( nodes > 1 )); then
  extra+=("trainer.nnodes=$nodes" "ray_kwargs.ray_init.address=${RAY_ADDRESS:-auto}")
fi
exec python -m aero_verl.main_ppo "+recipe=$recipe" "${extra[@]}" "$@"
