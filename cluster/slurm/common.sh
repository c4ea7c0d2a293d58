# Sourced by the sbatch scripts beside it (as "$COATNET_ROOT/cluster/slurm/common.sh": Slurm
# runs a copy of the batch script from its spool directory, so its own folder is unknown).
# Sets coatnet (the binary) and coatnet_launch, which starts one rank per Slurm task.
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
    mpirun -np "$SLURM_NTASKS" "$@" &
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
