# Sourced: a real Slurm cluster on the test hosts of tests/cluster/hosts.sh — slurmctld on host
# 1, one slurmd per host (each NodeName with its own address), MUNGE for authentication —
# installed from Debian packages when missing and removed with the hosts on EXIT.
#
#   source tests/cluster/slurm.sh
#   slurm_up 2 "$work"          # nodes HOSTTAGh1, HOSTTAGh2; files under $work/slurm
#   sl sbatch --nodes=2 ...     # a Slurm command, on host 1 where the controller listens
#   slurm_wait_job ID SECONDS   # until the job has ended; prints its final state
source "$(dirname "${BASH_SOURCE[0]}")/hosts.sh"

slurm_need() {
  hosts_need
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge \
      >/tmp/coatnet_slurm_apt.log 2>&1 ||
      { echo "SKIP: cannot install slurmctld, slurmd and munge with apt-get (see /tmp/coatnet_slurm_apt.log)"; exit 77; }
  fi
}

slurm_pids=()
slurm_down() {
  local p i
  for p in "${slurm_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The daemons are not this shell's children, so no `wait`: poll until they are gone (munged
  # writes its seed file as it exits; removing the test's directory before that raced with it,
  # "rm: cannot remove .../munge: Directory not empty"). SIGKILL after 10 s.
  for p in "${slurm_pids[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && { echo "slurm_down: pid $p ignored SIGTERM for 10 s; killing it" >&2; kill -9 "$p"; }
  done
  slurm_pids=()
  hosts_down
}

# sl CMD...: CMD on host 1 (the controller's address is reachable only from the test subnet).
sl() { on_host 1 "$@"; }

slurm_up() {
  local n=$1 i h
  slurm_dir=$2/slurm
  slurm_need
  hosts_up "$n"
  trap slurm_down EXIT
  mkdir -p "$slurm_dir/munge" "$slurm_dir/state" "$slurm_dir/log"
  chmod 755 "$slurm_dir"
  # MUNGE: a private key and socket (a Unix socket: reachable from every namespace).
  dd if=/dev/urandom of="$slurm_dir/munge/key" bs=1024 count=1 status=none
  chmod 400 "$slurm_dir/munge/key"
  local sock=$slurm_dir/munge/socket
  munged --force -S "$sock" --key-file="$slurm_dir/munge/key" --pid-file="$slurm_dir/munge/pid" \
    --log-file="$slurm_dir/munge/log" --seed-file="$slurm_dir/munge/seed" ||
    { echo "SKIP: munged does not start here ($(tail -2 "$slurm_dir/munge/log" 2>/dev/null))"; exit 77; }
  slurm_pids+=("$(cat "$slurm_dir/munge/pid")")
  local cpus mem nodes=""
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / (2 * n)))
  # Every node-local path carries %n: the nodes share one file system here, and two slurmds
  # (or two nodes' PMIx client directories under TmpFS) in one directory collide.
  cat >"$slurm_dir/slurm.conf" <<CONF
ClusterName=coatnettest
# Job ids of their own: PMIx names its per-job state after them, in places every test cluster
# on this machine shares (/dev/shm, /tmp).
FirstJobId=$((1000 + $$ % 100000 * 10))
SlurmctldHost=$(host_name 1)($(host_ip 1))
SlurmUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long before it starts again (120 s by default).
AuthInfo=socket=$sock,cred_expire=10
CredType=cred/munge
StateSaveLocation=$slurm_dir/state
SlurmdSpoolDir=$slurm_dir/spool-%n
TmpFS=$slurm_dir/tmp-%n
SlurmctldPidFile=$slurm_dir/slurmctld.pid
SlurmdPidFile=$slurm_dir/slurmd-%n.pid
SlurmctldLogFile=$slurm_dir/log/slurmctld.log
SlurmdLogFile=$slurm_dir/log/slurmd-%n.log
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
CONF
  for ((i = 1; i <= n; i++)); do
    h=$(host_name "$i")
    mkdir -p "$slurm_dir/spool-$h" "$slurm_dir/tmp-$h"
    echo "NodeName=$h NodeAddr=$(host_ip "$i") CPUs=$cpus RealMemory=$mem State=UNKNOWN" >>"$slurm_dir/slurm.conf"
    nodes+=${nodes:+,}$h
  done
  echo "PartitionName=test Nodes=$nodes Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4" \
    >>"$slurm_dir/slurm.conf"
  export SLURM_CONF=$slurm_dir/slurm.conf
  on_host 1 slurmctld -D -i -f "$SLURM_CONF" >"$slurm_dir/log/slurmctld.out" 2>&1 &
  slurm_pids+=($!)
  for ((i = 1; i <= n; i++)); do
    on_host "$i" slurmd -D -N "$(host_name "$i")" -f "$SLURM_CONF" >"$slurm_dir/log/slurmd-$i.out" 2>&1 &
    slurm_pids+=($!)
  done
  local idle=0
  for _ in $(seq 60); do
    idle=$(sl sinfo -h -N -t idle -o %N 2>/dev/null | wc -l)
    ((idle == n)) && break
    sleep 1
  done
  ((idle == n)) || { tail -n 20 "$slurm_dir"/log/*; echo "SKIP: slurmctld/slurmd did not bring $n node(s) up here"; exit 77; }
  echo "slurm up: $(sl sinfo -h -o '%P %D %T %C %N')"
}

slurm_state() { sl scontrol show job "$1" 2>/dev/null | grep -oE "JobState=[A-Z_]+" | cut -d= -f2; }

# slurm_wait_job ID SECONDS: waits until job ID has ended (or SECONDS passed); prints its state.
slurm_wait_job() {
  local s=""
  for _ in $(seq "$2"); do
    s=$(slurm_state "$1")
    [[ $s == COMPLETED || $s == FAILED || $s == CANCELLED || $s == TIMEOUT || $s == NODE_FAIL ]] && break
    sleep 1
  done
  echo "$s"
}
