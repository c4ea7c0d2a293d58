#!/usr/bin/env bash
# The sbatch scripts of cluster/slurm on a real Slurm (tests/cluster/slurm.sh: slurmctld, one
# slurmd per test host, MUNGE; installed from Debian packages when missing).
# usage: slurm_test.sh MODE COATNET PYTHON SOURCE_DIR      (exit 77 = skipped, reason printed)
#   requeue  1 node x 2 tasks: srun without PMI is refused with the reason; train.sbatch gets
#            SIGUSR1 mid-run (as --signal=B:USR1@180 sends it before the time limit), the ranks
#            checkpoint and exit 75, the script requeues the job, the next start resumes, and
#            the final weights equal those of an uninterrupted run
#   nodes    2 nodes: pack.sbatch writes the shards of a one-process pack byte for byte;
#            train.sbatch across both nodes (srun --mpi=pmix) is preempted, requeued, resumed
#            and ends with the uninterrupted run's weights; eval.sbatch across both nodes gives
#            the one-process evaluation's top-1, top-5 and loss
set -euo pipefail
mode=$1 coatnet=$(realpath "$2") py=$3 src=$(realpath "$4")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/slurm.sh"
slurm_need
work=$(mktemp -d /tmp/coatnet_slurm_test.XXXXXX)
chmod 755 "$work"
source "$src/tests/train/tiny_env.sh"  # packs the tiny data; mpi, fail, common
export COATNET_ROOT=$(cd "$(dirname "$coatnet")/../.." && pwd)

# stop_and_requeue NODES TASKS_PER_NODE LAUNCHER: the reference run (NODES*TASKS ranks on this
# machine, uninterrupted), then train.sbatch stopped at step 30 by SIGUSR1, requeued and
# resumed: its final weights must be the reference's, bit for bit.
stop_and_requeue() {
  local nodes=$1 tpn=$2 launcher=$3
  # 320 steps (some 6 s): the stop signal, sent at step 30, comes well before the end.
  local run=(--set "data.val=[]" --set schedule.epochs=20 --set checkpoint.every_steps=20)
  mpi $((nodes * tpn)) "$coatnet" train "${common[@]}" "${run[@]}" --set train.name=ref >/dev/null ||
    fail "the uninterrupted run failed"
  local job
  job=$(cd "$work" && COATNET_LAUNCHER=$launcher COATNET_RUN_NAME=slurmrun sl sbatch --parsable \
    --nodes="$nodes" --ntasks-per-node="$tpn" --gpus-per-node=0 --cpus-per-task=1 --time=10 \
    --job-name=coatnet-test --output="$work/job.out" \
    "$src/cluster/slurm/train.sbatch" "$src/tests/train/tiny.yaml" "${common[@]:2}" "${run[@]}")
  echo "submitted job $job ($nodes node(s) x $tpn task(s), launcher $launcher)"
  for _ in $(seq 300); do
    grep -q "step 30/" "$work/job.out" 2>/dev/null && break
    [[ $(slurm_state "$job") == PENDING || $(slurm_state "$job") == RUNNING ]] || break
    sleep 0.5
  done
  grep -q "step 30/" "$work/job.out" ||
    { cat "$work/job.out"; tail "$slurm_dir"/log/*.log; fail "the job did not start training"; }
  sl scancel --batch --signal=USR1 "$job"
  local s
  s=$(slurm_wait_job "$job" 600)
  cat "$work/job.out"
  [[ $s == COMPLETED ]] || fail "job ended $s"
  grep -q "stopped with a checkpoint: requeueing job $job" "$work/job.out" || fail "the job was not requeued"
  grep -q "start 1 on" "$work/job.out" || fail "no second start"
  grep -q "\[resume\] .*checkpoints/step-" "$work/job.out" || fail "the second start did not resume"
  cmp "$work/runs/ref/final.safetensors" "$work/runs/slurmrun/final.safetensors" ||
    fail "stopped + requeued + resumed run differs from the uninterrupted one"
}

case $mode in
requeue)
  slurm_up 1 "$work"
  trap 'slurm_down; rm -rf "$work"' EXIT
  # srun without PMI starts singletons: refused, not trained as separate models.
  set +e
  sl srun --mpi=none --ntasks=2 --cpus-per-task=1 "$coatnet" train "${common[@]}" --set "data.val=[]" \
    --set train.name=nopmi >"$work/nopmi.out" 2>&1
  rc=$?
  set -e
  [[ $rc != 0 ]] || fail "srun --mpi=none: two singleton ranks trained"
  # Our check, or Open MPI's own refusal of a direct launch without PMI, whichever comes first.
  grep -qE "SLURM_STEP_NUM_TASKS=2 tasks were launched, but MPI sees a world of 1|SLURM's PMI support" \
    "$work/nopmi.out" || { cat "$work/nopmi.out"; fail "no message about the missing PMI"; }
  [[ ! -e $work/runs/nopmi/metrics.jsonl ]] || fail "srun --mpi=none: a singleton rank started training"
  echo "srun --mpi=none: refused with the reason"
  # srun with PMIx where this Slurm and Open MPI have it, else mpirun inside the allocation.
  launcher=${COATNET_TEST_LAUNCHER:-}
  if [[ -z $launcher ]]; then
    if sl srun --mpi=pmix --ntasks=2 --cpus-per-task=1 "$coatnet" plugins >/dev/null 2>"$work/pmix.err"; then
      launcher=srun
    else
      launcher=mpirun
      echo "srun --mpi=pmix does not work here ($(head -1 "$work/pmix.err")): using mpirun"
    fi
  fi
  stop_and_requeue 1 2 "$launcher"
  echo "PASS: slurm requeue and resume on 1 node"
  ;;
nodes)
  slurm_up 2 "$work"
  trap 'slurm_down; rm -rf "$work"' EXIT
  # pack.sbatch: 2 nodes x 2 tasks write the bytes of one process. Rank 1 of the first start
  # dies of SIGSEGV before MPI is up (as a rank crashing in MPI_Init does now and then with this
  # Slurm, PMIx and Open MPI; common.sh): the script starts again, and the shards are the same.
  "$coatnet" pack idx "$work/train-images-idx3-ubyte" "$work/train-labels-idx1-ubyte" "$work/p1/train" \
    --records-per-shard 30 >/dev/null
  mkdir -p "$work/p2" "$work/crashroot/build/bin"
  ln -s "$src/cluster" "$work/crashroot/cluster"
  cat >"$work/crashroot/build/bin/coatnet" <<SH
#!/usr/bin/env bash
if [[ \${SLURM_PROCID:-} == 1 ]] && mkdir "$work/crashed-once" 2>/dev/null; then kill -SEGV \$\$; fi
exec "$coatnet" "\$@"
SH
  chmod +x "$work/crashroot/build/bin/coatnet"
  (cd "$work" && COATNET_ROOT=$work/crashroot COATNET_SRUN_WAIT=5 sl timeout 300 sbatch --wait --nodes=2 \
    --ntasks-per-node=2 --cpus-per-task=1 --time=10 --output="$work/pack.out" \
    "$src/cluster/slurm/pack.sbatch" idx "$work/train-images-idx3-ubyte" \
    "$work/train-labels-idx1-ubyte" "$work/p2/train" --records-per-shard 30 >/dev/null) ||
    { cat "$work/pack.out"; fail "pack.sbatch failed"; }
  [[ -d $work/crashed-once ]] || fail "the planted crash did not happen"
  grep -q "before MPI was up in every rank, so no work began: starting again (1 of 2" "$work/pack.out" ||
    { cat "$work/pack.out"; fail "pack.sbatch did not start again after a rank died before MPI was up"; }
  ! ls "$work"/.coatnet-started-* >/dev/null 2>&1 || fail "COATNET_STARTED_FILE left behind"
  n=$(ls "$work/p1" | wc -l)
  [[ $n -gt 4 && $(ls "$work/p2" | wc -l) == "$n" ]] || fail "shard counts differ: $n vs $(ls "$work/p2" | wc -l)"
  for f in "$work"/p1/*; do cmp "$f" "$work/p2/$(basename "$f")" || fail "pack.sbatch: $(basename "$f") differs"; done
  echo "pack.sbatch on 2 nodes, started again after a rank died before MPI was up: $n shards byte-identical to one process's"

  stop_and_requeue 2 1 srun
  grep -m1 -E "^\[slurm\] job .* start 0 on .*h\[1-2\]" "$work/job.out" >/dev/null ||
    fail "the training job did not run on both nodes"
  echo "train.sbatch on 2 nodes: preempted, requeued, resumed, weights bit-identical"

  # eval.sbatch: 2 nodes x 1 task give the one-process evaluation.
  "$coatnet" eval "${common[@]}" --weights "$work/runs/ref/final.safetensors" --json >"$work/eval1.json"
  (cd "$work" && sl timeout 300 sbatch --wait --nodes=2 --ntasks-per-node=1 --gpus-per-node=0 \
    --cpus-per-task=1 --time=10 --output="$work/eval.out" "$src/cluster/slurm/eval.sbatch" \
    "$src/tests/train/tiny.yaml" "$work/runs/slurmrun/final.safetensors" "${common[@]:2}" --json >/dev/null) ||
    { cat "$work/eval.out"; fail "eval.sbatch failed"; }
  "$py" - "$work/eval1.json" "$work/eval.out" <<'PY'
import json, sys
one = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
lines = [l for l in open(sys.argv[2]) if l.startswith("{")]
assert len(lines) == 1, f"expected one JSON line from rank 0, got {len(lines)}"
two = json.loads(lines[0])
for k in ("top1", "top5", "samples"):
    assert one[k] == two[k], (k, one[k], two[k])
assert abs(one["loss"] - two["loss"]) <= 1e-5 * max(1.0, abs(one["loss"])), (one["loss"], two["loss"])
print(f"eval.sbatch on 2 nodes: top-1 {two['top1']}, top-5 {two['top5']}, loss {two['loss']:.6f} "
      f"over {two['samples']} samples, as one process")
PY
  echo "PASS: pack, train (preempted, requeued, resumed) and eval across 2 Slurm nodes"
  ;;
*) fail "unknown mode $mode" ;;
esac
