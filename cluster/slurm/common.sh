# Sourced by the sbatch scripts beside it (as "$COATNET_ROOT/cluster/slurm/common.sh": Slurm
# runs a copy of the batch script from its spool directory, so its own folder is unknown).
# Sets coatnet (the binary) and coatnet_run, which starts one rank per Slurm task and waits (rc).
coatnet=$root/build/bin/coatnet
if [[ ! -x $coatnet ]]; then
  echo "[slurm] $coatnet not found: build with launch/setup.sh, or set COATNET_ROOT to the checkout" >&2
  exit 2
fi

# coatnet_launch CMD...: CMD once per task, in the background; its pid in launcher_pid.
# COATNET_LAUNCHER=srun (default): PMIx connects the tasks into one MPI world
# (COATNET_SRUN_MPI=pmi2 for older stacks); =mpirun: Open MPI's own launcher inside the allocation.
#
# Not srun --kill-on-bad-exit: after a stop with a checkpoint every rank exits 75, and the first
# to do so would have srun kill the others, whose 143 srun then returns instead of 75 (seen on
# 2 nodes: the job was not requeued). The ranks leave together (they pass an end-of-training
# barrier); --wait ends the rest 30 s after the first task ended, should one die before MPI is
# up. During training, a rank that dies ends the others by their dist.timeout_s deadline.
coatnet_launch() {
  if [[ ${COATNET_LAUNCHER:-srun} == mpirun ]]; then
    mpirun -np "$SLURM_NTASKS" -x COATNET_STARTED_FILE "$@" &
  else
    srun --kill-on-bad-exit=0 --wait="${COATNET_SRUN_WAIT:-30}" --mpi="${COATNET_SRUN_MPI:-pmix}" "$@" &
  fi
  launcher_pid=$!
}

# coatnet_wait: waits for the launcher — again when a trapped signal ended `wait` early — and
# sets rc to its exit status.
coatnet_wait() {
  rc=0
  while :; do
    wait "$launcher_pid"
    rc=$?
    kill -0 "$launcher_pid" 2>/dev/null || break
  done
}

# coatnet_run CMD...: coatnet_launch + coatnet_wait, started again (at most COATNET_START_RETRIES
# times, default 2) when the ranks died of a signal before MPI was up in all of them. Rank 0
# writes COATNET_STARTED_FILE once every rank is past MPI_Init; without it no rank has begun
# the command's work, so nothing is lost by starting over. Why: on Slurm 22.05 + PMIx 4.2 +
# Open MPI 4.1 (Debian 12), a rank now and then received its first MPI message while still in
# MPI_Init's first PMIx fence and crashed (SIGSEGV in Open MPI's TCP transport, a callback not
# yet registered): 2-5 in 200 two-node starts on a loaded machine, whichever fence algorithm
# (tests/cluster/mpi_start_stress.sh). Set coatnet_stopping to forbid a retry (a stop signal).
coatnet_run() {
  local attempt retries=${COATNET_START_RETRIES:-2} dir=${SLURM_SUBMIT_DIR:-$PWD}
  # Rank 0 writes it; it runs on the batch script's node in Slurm's default layouts.
  [[ -w $dir ]] || dir=${TMPDIR:-/tmp}
  for ((attempt = 0; ; attempt++)); do
    export COATNET_STARTED_FILE=$dir/.coatnet-started-${SLURM_JOB_ID:-0}-${SLURM_RESTART_COUNT:-0}-$attempt
    rm -f "$COATNET_STARTED_FILE"
    coatnet_launch "$@"
    coatnet_wait
    if [[ -e $COATNET_STARTED_FILE ]]; then
      rm -f "$COATNET_STARTED_FILE"
      return
    fi
    ((rc > 128 && attempt < retries)) && [[ -z ${coatnet_stopping:-} ]] || return
    echo "[slurm] a rank died (exit $rc) before MPI was up in every rank, so no work began:" \
      "starting again ($((attempt + 1)) of $retries, COATNET_START_RETRIES)" >&2
  done
}
