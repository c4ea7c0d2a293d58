#!/usr/bin/env bash
# `coatnet plan` against measurement: the tiny CI model on 2 test hosts (tests/cluster/hosts.sh)
# whose links are rate-limited with tc (a token bucket on each host's interface), at several
# rates. For each: the measured step time and communication share of the 2-host run, and what
# `coatnet plan` predicts from the 1-rank step time, the rate and the run's bucket sizes.
# Prints a table and one JSON line per rate. Needs root (namespaces); exit 77 otherwise.
# usage: tests/bench/scaling_check.sh [RATE_MBIT ...]   (default: 5 20 100)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
coatnet=$root/build/bin/coatnet
py=$root/.venv/bin/python
[[ -x $py ]] || py=python3
rates=("${@:-5 20 100}")
[[ $# -gt 0 ]] || rates=(5 20 100)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source "$root/tests/cluster/hosts.sh"
hosts_need
work=$(mktemp -d /tmp/coatnet_scaling.XXXXXX)
source "$root/tests/train/tiny_env.sh" >/dev/null
hosts_slots=1 hosts_up 2
trap 'hosts_down; rm -rf "$work"' EXIT
r=(--set train.threads=1 --set data.workers=1 --set "data.val=[]" --set train.max_steps=40
   --set schedule.epochs=50 --set train.log_every_steps=10 --set checkpoint.enabled=false)
# mean step_s and comm share over the train records after the first (warm-up) window
steady() {
  "$py" -c 'import json, sys
tr = [json.loads(l) for l in open(sys.argv[1])][1:]
tr = [t for t in tr if t["type"] == "train"][1:]
s = sum(t["step_s"] for t in tr) / len(tr)
print(s * 1e3, sum(t["comm_wait_s"] for t in tr) / len(tr) / s)' "$work/runs/$1/metrics.jsonl"
}
# One rank with the per-rank batch of the 2-rank runs (global 16 -> 8): the compute step.
"$coatnet" train "${common[@]}" "${r[@]}" --set data.batch_size=8 --set train.name=one >/dev/null 2>&1
read -r step1 _ < <(steady one)
printf '%-10s %-12s %-12s %-14s %-14s\n' "Mbit/s" "step ms" "predicted" "comm share" "predicted"
for rate in "${rates[@]}"; do
  for i in 1 2; do
    ip netns exec "$(host_name "$i")" tc qdisc replace dev eth0 root tbf rate "${rate}mbit" \
      burst 64kbit latency 500ms
  done
  "${mpirun_hosts[@]}" --map-by node -np 2 "$coatnet" train "${common[@]}" "${r[@]}" \
    --set train.name="r$rate" >/dev/null 2>&1
  read -r step2 share2 < <(steady "r$rate")
  pred=$("$coatnet" plan --config "$root/tests/train/tiny.yaml" --step-ms "$step1" --gpus 2 \
    --gpus-per-node 1 --link-gbps "$(awk "BEGIN{print $rate/1000}")" --latency-us 50 \
    --first-bucket-mb 0.02 --bucket-mb 0.05 --json)
  read -r pstep pshare < <("$py" -c 'import json,sys; p=json.loads(sys.argv[1])["points"][0]; print(p["step_ms"], p["comm_share"])' "$pred")
  printf '%-10s %-12.1f %-12.1f %-14.3f %-14.3f\n' "$rate" "$step2" "$pstep" "$share2" "$pshare"
  echo "{\"rate_mbit\":$rate,\"one_rank_step_ms\":$step1,\"step_ms\":$step2,\"predicted_step_ms\":$pstep,\"comm_share\":$share2,\"predicted_comm_share\":$pshare}"
done
