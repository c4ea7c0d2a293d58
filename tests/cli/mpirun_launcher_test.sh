#!/usr/bin/env bash
# launch/coatnet-mpirun --dry-run: the defaults it adds (one rank per GPU, or per socket without
# GPUs, and its binding, COATNET_* exported to every rank, the out-of-band keepalive), the user's options
# winning over them, and the warning about a disabled single-copy transport.
set -euo pipefail
launcher=${1:?usage: mpirun_launcher_test.sh LAUNCHER}
fail() { echo "FAIL: $*" >&2; exit 1; }
unset OMPI_MCA_btl_vader_single_copy_mechanism  # the warning is tested on purpose, below
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
map=("--map-by ppr:1:socket" "--bind-to socket")
((gpus > 0)) && map=("--map-by ppr:$gpus:node" "--bind-to numa")
out=$(COATNET_X=1 "$launcher" --dry-run build/bin/coatnet train 2>&1)
for want in "${map[@]}" "-x COATNET_X" \
            "--mca oob_tcp_keepalive_time 5" "build/bin/coatnet train"; do
  [[ $out == *"$want"* ]] || fail "no '$want' in: $out"
done
[[ $out != *warning* ]] || fail "a warning without cause: $out"
out=$("$launcher" --dry-run -np 3 --bind-to none prog 2>&1)
[[ $out == *"-np 3 --bind-to none prog"* && $out != *"--map-by"* && $out != *"${map[1]}"* ]] ||
  fail "the user's -np/--bind-to did not replace the defaults: $out"
out=$(OMPI_MCA_btl_vader_single_copy_mechanism=none "$launcher" --dry-run prog 2>&1)
[[ $out == *"warning: OMPI_MCA_btl_vader_single_copy_mechanism=none"* ]] ||
  fail "no warning about single_copy_mechanism=none: $out"
echo "PASS: mpirun_launcher"
