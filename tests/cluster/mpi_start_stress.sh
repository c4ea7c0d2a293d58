#!/usr/bin/env bash
# Starts a minimal MPI program (MPI_Init, three allreduces, MPI_Finalize) many times with
# `srun --mpi=pmix` on 2 test Slurm nodes x 2 tasks, and counts the starts that fail. It is the
# evidence behind cluster/slurm/common.sh's coatnet_run, which starts a job again when a rank
# died before MPI was up: on Slurm 22.05 + PMIx 4.2 + Open MPI 4.1 (Debian 12) a rank now and
# then crashes inside MPI_Init (SIGSEGV in the TCP transport), with either fence algorithm of
# Slurm's PMIx plugin. A statistical measurement, so not part of ctest (about 3 minutes per 200
# starts).
#
# usage: tests/cluster/mpi_start_stress.sh [--starts N] [--launcher srun|mpirun]
#                                          [--fence default|tree|ring|mixed] [--load]
#   --starts N   starts to try (default 100)
#   --launcher L srun --mpi=pmix on the test Slurm (default), or mpirun across the same 2 test
#                hosts (Open MPI's own daemons; what launch/coatnet-mpirun uses)
#   --fence F    SLURM_PMIX_FENCE for the srun starts; default = the plugin's own choice (unset)
#   --load       keep every core busy meanwhile (the crash needs a slow rank: 1-2.5 in 100
#                on this 2-core machine)
# Prints one line per failed start and, last, one JSON line:
#   {"launcher": ..., "fence": ..., "starts": N, "failed": K, "load": ..., "seconds_per_start": S}
set -uo pipefail
starts=100 fence=default load=0 launcher=srun
while [[ $# -gt 0 ]]; do
  case $1 in
  --starts) starts=$2; shift 2 ;;
  --fence) fence=$2; shift 2 ;;
  --launcher) launcher=$2; shift 2 ;;
  --load) load=1; shift ;;
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "mpi_start_stress.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $starts =~ ^[1-9][0-9]*$ ]] || { echo "--starts must be a positive integer, got '$starts'" >&2; exit 2; }
case $fence in default | tree | ring | mixed) ;; *)
  echo "--fence must be default, tree, ring or mixed, got '$fence'" >&2; exit 2 ;;
esac
[[ $launcher == srun || $launcher == mpirun ]] ||
  { echo "--launcher must be srun or mpirun, got '$launcher'" >&2; exit 2; }
command -v mpicc >/dev/null || { echo "SKIP: mpicc not found (apt-get install libopenmpi-dev)"; exit 77; }

here=$(cd "$(dirname "$0")" && pwd)
source "$here/slurm.sh"
if [[ $launcher == srun ]]; then slurm_need; else hosts_need; fi  # mpirun needs no Slurm
work=$(mktemp -d /tmp/coatnet_mpi_start_stress.XXXXXX)
chmod 755 "$work"
burners=()
cleanup() {
  [[ ${#burners[@]} -eq 0 ]] || kill "${burners[@]}" 2>/dev/null
  slurm_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

cat >"$work/hello.c" <<'C'
#include <mpi.h>
#include <stdio.h>
int main(int argc, char** argv) {
  int provided, size, one = 1, sum = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (int i = 0; i < 3; ++i) MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  if (sum != size) { fprintf(stderr, "allreduce gave %d, expected %d\n", sum, size); return 1; }
  return 0;
}
C
mpicc -O2 "$work/hello.c" -o "$work/hello" || { echo "FAIL: mpicc could not build the test program" >&2; exit 1; }
if [[ $launcher == srun ]]; then
  slurm_up 2 "$work"
  trap cleanup EXIT  # slurm_up sets its own EXIT trap
  start=(sl timeout 120 srun --mpi=pmix --nodes=2 --ntasks-per-node=2 --cpus-per-task=1 "$work/hello")
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  hosts_up 2
  trap cleanup EXIT  # hosts_up sets its own EXIT trap
  hosts_mpirun
  # mpirun_hosts is (on_host 1 mpirun OPTIONS...): the deadline goes inside on_host.
  start=("${mpirun_hosts[@]:0:2}" timeout 120 "${mpirun_hosts[@]:2}" -np 4 "$work/hello")
fi
if [[ $fence == default ]]; then unset SLURM_PMIX_FENCE; else export SLURM_PMIX_FENCE=$fence; fi
if [[ $load == 1 ]]; then
  for ((c = 0; c < $(nproc); c++)); do (while :; do :; done) & burners+=($!); done
fi
ulimit -c 0
failed=0
t0=$(date +%s.%N)
for ((i = 1; i <= starts; i++)); do
  if ! (cd "$work" && "${start[@]}" >"$work/out.txt" 2>&1); then
    failed=$((failed + 1))
    echo "start $i failed: $(grep -m2 -E 'Signal:|error' "$work/out.txt" | tr '\n' ' ')"
  fi
done
t1=$(date +%s.%N)
echo "{\"launcher\": \"$launcher\", \"fence\": \"$fence\", \"starts\": $starts, \"failed\": $failed, \"load\": $([[ $load == 1 ]] && echo true || echo false), \"seconds_per_start\": $(awk "BEGIN { printf \"%.3f\", ($t1 - $t0) / $starts }")}"
