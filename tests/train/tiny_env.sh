# Sourced by the scripts that run `coatnet train` under mpirun on a tiny synthetic IDX dataset
# (tests/train/train_mpi.sh, tests/checkpoint/ckpt_mpi.sh). Needs $coatnet, $py and an empty
# $work; packs the data there and defines mpi, fail, compare and `common` (the tiny recipe on
# that data).
tiny_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { mpirun --oversubscribe -np "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

"$py" "$tiny_dir/make_tiny_idx.py" "$work" 256 101
"$coatnet" pack idx "$work/train-images-idx3-ubyte" "$work/train-labels-idx1-ubyte" "$work/train" \
  --records-per-shard 100 >/dev/null
"$coatnet" pack idx "$work/val-images-idx3-ubyte" "$work/val-labels-idx1-ubyte" "$work/val" \
  --records-per-shard 40 >/dev/null
common=(--config "$tiny_dir/tiny.yaml" --set "data.train=[$work/train-*.h5]"
        --set "data.val=[$work/val-*.h5]" --set "train.run_dir=$work/runs")
# COATNET_TEST_DEVICE=cuda runs the same tests on the GPU (launch/gpu-check.sh does), and
# COATNET_TEST_MAX_NP caps the ranks a test starts (one GPU holds one NCCL rank).
ranks() { local n=$1 max=${COATNET_TEST_MAX_NP:-64}; echo $((n < max ? n : max)); }
[[ -z ${COATNET_TEST_DEVICE:-} ]] ||
  common+=(--set "train.device=$COATNET_TEST_DEVICE" --set train.deterministic=true)

# "ABS REL": max |a - b| over all tensors of two safetensors files, and that over max |a|.
compare() {
  "$py" - "$1" "$2" <<'PY'
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), "different tensor names"
diff = max(float(abs(a[k].astype("f8") - b[k].astype("f8")).max()) for k in a)
scale = max(float(abs(a[k]).max()) for k in a)
print(f"{diff:.3e} {diff / scale:.3e}")
PY
}
