#!/usr/bin/env bash
# cluster/slurm/train.sbatch on a real Slurm: installs Slurm and MUNGE when missing (Debian
# packages, as root), starts munged, slurmctld and slurmd for this one node with a private
# config, and submits the script. Mid-run the batch shell gets SIGUSR1 (as --signal=B:USR1@180
# sends it before the time limit): the ranks checkpoint and exit 75, the script requeues the
# job, the next start resumes, and the final weights equal those of an uninterrupted run.
# usage: slurm_test.sh COATNET PYTHON SOURCE_DIR      (exit 77 = skipped, reason printed)
set -euo pipefail
coatnet=$(realpath "$1") py=$2 src=$(realpath "$3")
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || skip "starting slurmctld/slurmd for a test needs root"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/tmp/coatnet_slurm_apt.log 2>&1 ||
    skip "cannot install slurmctld, slurmd and munge with apt-get (see /tmp/coatnet_slurm_apt.log)"
fi

work=$(mktemp -d /tmp/coatnet_slurm_test.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# --- MUNGE (Slurm's authentication): a private key and socket ---
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/key" bs=1024 count=1 status=none
chmod 400 "$work/munge/key"
sock=$work/munge/socket
munged --force -S "$sock" --key-file="$work/munge/key" --pid-file="$work/munge/pid" \
  --log-file="$work/munge/log" --seed-file="$work/munge/seed" ||
  skip "munged does not start here ($(tail -2 "$work/munge/log" 2>/dev/null))"
pids+=("$(cat "$work/munge/pid")")

# --- slurmctld + slurmd for this node, on private ports ---
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$work/state" "$work/spool" "$work/log"
cat >"$work/slurm.conf" <<CONF
ClusterName=coatnettest
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/builtin
SlurmctldTimeout=30
InactiveLimit=0
KillWait=10
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qE "^idle" && break
  sleep 1
done
sinfo -h -o %T 2>/dev/null | grep -qE "^idle" ||
  { tail -20 "$work/log/"*; skip "slurmctld/slurmd did not bring the node up here"; }
echo "slurm up: $(sinfo -h -o '%P %D %T %C')"

# --- data and a reference run without interruption ---
"$py" "$src/tests/train/make_tiny_idx.py" "$work" 256 101
"$coatnet" pack idx "$work/train-images-idx3-ubyte" "$work/train-labels-idx1-ubyte" "$work/train" >/dev/null
common=(--set "data.train=[$work/train-*.h5]" --set "data.val=[]" --set "train.run_dir=$work/runs"
        --set schedule.epochs=6 --set checkpoint.every_steps=20 --set train.log_every_steps=1)
mpirun --oversubscribe -np 2 "$coatnet" train --config "$src/tests/train/tiny.yaml" "${common[@]}" \
  --set train.name=ref >/dev/null

# --- srun without PMI starts singletons: refused, not trained as separate models ---
set +e
srun --mpi=none --ntasks=2 --cpus-per-task=1 "$coatnet" train --config "$src/tests/train/tiny.yaml" \
  "${common[@]}" --set train.name=nopmi >"$work/nopmi.out" 2>&1
rc=$?
set -e
[[ $rc != 0 ]] || fail "srun --mpi=none: two singleton ranks trained"
# Our check, or Open MPI's own refusal of a direct launch without PMI, whichever comes first.
grep -qE "SLURM_STEP_NUM_TASKS=2 tasks were launched, but MPI sees a world of 1|SLURM's PMI support" \
  "$work/nopmi.out" || { cat "$work/nopmi.out"; fail "no message about the missing PMI"; }
[[ ! -e $work/runs/nopmi/metrics.jsonl ]] || fail "srun --mpi=none: a singleton rank started training"
echo "srun --mpi=none: refused with the reason"

# --- the job: stopped by SIGUSR1 to the batch shell, requeued, resumed ---
# srun with PMIx where this Slurm and Open MPI have it, else mpirun inside the allocation.
launcher=${COATNET_TEST_LAUNCHER:-}
if [[ -z $launcher ]]; then
  if srun --mpi=pmix --ntasks=2 --cpus-per-task=1 "$coatnet" plugins >/dev/null 2>"$work/pmix.err"; then
    launcher=srun
  else
    launcher=mpirun
    echo "srun --mpi=pmix does not work here ($(head -1 "$work/pmix.err")): using mpirun"
  fi
fi
job=$(cd "$work" && COATNET_ROOT=$(cd "$(dirname "$coatnet")/../.." && pwd) COATNET_LAUNCHER=$launcher \
  COATNET_RUN_NAME=slurmrun sbatch --parsable --ntasks=2 --ntasks-per-node=2 --gpus-per-node=0 \
  --cpus-per-task=1 --time=10 --job-name=coatnet-test --output="$work/job.out" \
  "$src/cluster/slurm/train.sbatch" "$src/tests/train/tiny.yaml" "${common[@]}")
echo "submitted job $job (launcher $launcher)"
state() { scontrol show job "$job" 2>/dev/null | grep -oE "JobState=[A-Z_]+" | cut -d= -f2; }
for _ in $(seq 300); do
  grep -q "step 30/" "$work/job.out" 2>/dev/null && break
  [[ $(state) == PENDING || $(state) == RUNNING ]] || break
  sleep 0.5
done
grep -q "step 30/" "$work/job.out" || { cat "$work/job.out"; tail "$work/log/"*.log; fail "the job did not start training"; }
scancel --batch --signal=USR1 "$job"
for _ in $(seq 600); do
  s=$(state)
  [[ $s == COMPLETED || $s == FAILED || $s == CANCELLED || $s == TIMEOUT ]] && break
  sleep 1
done
cat "$work/job.out"
[[ $(state) == COMPLETED ]] || fail "job ended $(state)"
grep -q "stopped with a checkpoint: requeueing job $job" "$work/job.out" || fail "the job was not requeued"
grep -q "start 1 on" "$work/job.out" || fail "no second start"
grep -q "\[resume\] .*checkpoints/step-" "$work/job.out" || fail "the second start did not resume"
cmp "$work/runs/ref/final.safetensors" "$work/runs/slurmrun/final.safetensors" ||
  fail "stopped + requeued + resumed run differs from the uninterrupted one"
echo "PASS: slurm requeue and resume (job $job)"
