#!/usr/bin/env bash
# Runs across test hosts (tests/cluster/hosts.sh: network namespaces on one machine, Open MPI
# over TCP between them) against the same runs on one host.
# usage: multihost_test.sh MODE COATNET PYTHON
#   equivalence  2 hosts x 2 ranks == 1 host x 4 ranks: the same data_hash every step and
#                bit-identical weights (1 thread per rank); each rank's host, local rank,
#                threads and device in the env record
#   pack         `coatnet pack` across 2 hosts writes the same bytes as on one host
#   resume       a checkpoint saved by 2 hosts x 2 ranks resumes on 1 host (4 ranks, and 2):
#                the same final weights as the uninterrupted 2-host run (bit-identical at 4)
# Exit 77 (skipped, with the reason) where namespaces cannot be made.
set -euo pipefail
mode=$1 coatnet=$2 py=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/hosts.sh"
hosts_need
work=$(mktemp -d /tmp/coatnet_multihost.XXXXXX)
source "$here/../train/tiny_env.sh"
hosts_up 2
trap 'hosts_down; rm -rf "$work"' EXIT
one=(--set train.threads=1 --set data.workers=1 --set "data.val=[]")

# "STEP HASH" of every train record of a run.
hashes() {
  "$py" -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["type"] == "train": print(r["step"], r["data_hash"], r["loss"])' "$work/runs/$1/metrics.jsonl"
}

case $mode in
equivalence)
  mpi 4 "$coatnet" train "${common[@]}" "${one[@]}" --set train.max_steps=8 --set train.name=h1 \
    >"$work/h1.log" 2>&1 || { cat "$work/h1.log"; fail "1 host x 4 ranks failed"; }
  "${mpirun_hosts[@]}" -np 4 "$coatnet" train "${common[@]}" "${one[@]}" --set train.max_steps=8 \
    --set train.name=h2 >"$work/h2.log" 2>&1 || { cat "$work/h2.log"; fail "2 hosts x 2 ranks failed"; }
  diff <(hashes h1) <(hashes h2) >/dev/null ||
    { diff <(hashes h1) <(hashes h2) | head; fail "data order or losses differ between 1 and 2 hosts"; }
  cmp "$work/runs/h1/final.safetensors" "$work/runs/h2/final.safetensors" ||
    fail "weights after 8 steps differ between 1 host x 4 and 2 hosts x 2"
  "$py" - "$work/runs/h2/metrics.jsonl" "$(host_name 1)" "$(host_name 2)" <<'PY'
import json, sys
env = next(json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["type"] == "env")
ranks = env["ranks"]
want_hosts = [sys.argv[2], sys.argv[2], sys.argv[3], sys.argv[3]]
assert [r["host"] for r in ranks] == want_hosts, ranks
assert [r["local_rank"] for r in ranks] == [0, 1, 0, 1], ranks
assert [r["threads"] for r in ranks] == [1, 1, 1, 1], ranks
assert all(r["device"] == "cpu" for r in ranks), ranks
assert env["ranks_per_node"] == 2, env
print("env record:", ", ".join(f'rank {r["rank"]} on {r["host"]} (local {r["local_rank"]})' for r in ranks))
PY
  echo "PASS: 2 hosts x 2 ranks equal 1 host x 4 ranks (data order, losses, weights bit-identical)"
  ;;
pack)
  "$coatnet" pack idx "$work/train-images-idx3-ubyte" "$work/train-labels-idx1-ubyte" \
    "$work/p1/train" --records-per-shard 30 >/dev/null
  mkdir -p "$work/p2"
  "${mpirun_hosts[@]}" -np 4 "$coatnet" pack idx "$work/train-images-idx3-ubyte" \
    "$work/train-labels-idx1-ubyte" "$work/p2/train" --records-per-shard 30 >"$work/pack.log" 2>&1 ||
    { cat "$work/pack.log"; fail "pack across hosts failed"; }
  n=$(ls "$work/p1" | wc -l)
  [[ $n -gt 4 && $(ls "$work/p2" | wc -l) == "$n" ]] || fail "shard counts differ: $n vs $(ls "$work/p2" | wc -l)"
  for f in "$work"/p1/*; do cmp "$f" "$work/p2/$(basename "$f")" || fail "$(basename "$f") differs"; done
  echo "PASS: $n shards packed across 2 hosts are byte-identical to one host's"
  ;;
resume)
  # SyncBN, no stochastic depth and eps 1e-5, as ckpt_reshard: W=4 -> W=2 then differs only
  # by summation order.
  ck=(--set checkpoint.every_steps=5 --set dist.sync_bn=true --set model.drop_path=0
      --set optim.eps=1e-5)
  "${mpirun_hosts[@]}" -np 4 "$coatnet" train "${common[@]}" "${one[@]}" "${ck[@]}" \
    --set train.max_steps=10 --set train.name=straight >/dev/null 2>&1 || fail "2-host run failed"
  for np in 4 2; do
    mkdir -p "$work/runs/on1_$np/checkpoints"
    cp -r "$work/runs/straight/checkpoints/step-00000005" "$work/runs/on1_$np/checkpoints/"
    mpi $np "$coatnet" train "${common[@]}" "${one[@]}" "${ck[@]}" --set train.max_steps=10 \
      --set train.name=on1_$np --resume auto >"$work/on1_$np.log" 2>&1 ||
      { cat "$work/on1_$np.log"; fail "resume on 1 host x $np failed"; }
    grep -q "\[resume\] .*step-00000005: step 5" "$work/on1_$np.log" || fail "W=$np did not resume at step 5"
  done
  cmp "$work/runs/straight/final.safetensors" "$work/runs/on1_4/final.safetensors" ||
    fail "resumed on 1 host x 4: final weights differ from the 2-host run"
  read -r abs rel < <(compare "$work/runs/straight/final.safetensors" "$work/runs/on1_2/final.safetensors")
  echo "resumed on 1 host x 2 ranks: max |dparam| $abs (relative $rel)"
  "$py" -c "import sys; sys.exit(0 if float('$rel') < 1e-4 else 1)" || fail "W=2 resume off by $rel"
  echo "PASS: a checkpoint of 2 hosts resumes on 1 host (bit-identical at the same world size)"
  ;;
*) fail "unknown mode $mode" ;;
esac
