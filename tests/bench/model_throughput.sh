#!/usr/bin/env bash
# coatnet vs timm forward+backward images/s, same model, batch, torch and threads, one run.
# Runs them alternately (A B A B) so background load hits both alike; prints one JSON object.
# usage: model_throughput.sh [MODEL] [BATCH] [STEPS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:-coatnet_0_224}
batch=${2:-8}
steps=${3:-5}
py="$root/.venv/bin/python"
[[ -x $py ]] || py=python3
best() { "$py" -c 'import json,sys; r=[json.loads(l) for l in sys.stdin if l.startswith("{")]; print(max(x["images_per_s"] for x in r))'; }
ours=""
peer=""
for _ in 1 2; do
  ours+=$("$root/build/bin/bench_model" --model "$model" --batch "$batch" --steps "$steps" --json)$'\n'
  peer+=$("$py" "$root/tests/bench/timm_model_bench.py" --model "$model" --batch "$batch" --steps "$steps")$'\n'
done
a=$(best <<<"$ours")
b=$(best <<<"$peer")
"$py" -c "import json; print(json.dumps({'model': '$model', 'batch': $batch, 'coatnet_images_per_s': $a, 'timm_images_per_s': $b, 'ratio': $a / $b}))"
