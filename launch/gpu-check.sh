#!/usr/bin/env bash
# The one command that verifies and measures the GPU path, on any machine with an NVIDIA GPU
# and a Python torch with CUDA (python3 on PATH, or $COATNET_GPU_PYTHON):
#
#   launch/gpu-check.sh [--bundle DIR] [--prebuilt DIR] [--out DIR] [--deadline S]
#                       [--only NAMES] [--diagnostics] [--baseline DIR] [--skip-build] [--help]
#
#   --bundle DIR   what launch/gpu-bundle.sh DIR made elsewhere: the project's system libraries
#                  (Open MPI, HDF5, yaml-cpp, Boost, libjpeg-turbo, xxHash, GoogleTest, ...) for
#                  a machine that lacks them
#   --out DIR      where the table (gpu-check.txt), one JSON (gpu-check.json) and the logs go
#                  (default: $OUT if set, else ./gpu-check-out)
#   --prebuilt DIR what launch/gpu-prebuild.sh DIR made elsewhere against this machine's torch
#                  version (bin/ and lib/): used instead of building here when it runs, which saves
#                  the build's minutes of a borrowed machine; built here when it does not
#   --deadline S   stop starting new steps S seconds after the start (default 540), so that the
#                  table is printed inside a limited lease; each step is also bounded by its own
#                  timeout, and what did not run is listed as skipped
#   --only NAMES   run only these tests and benchmarks (comma-separated, as the table names
#                  them: mpi_w2,ours_coatnet_0_bf16,...); the rest are listed as skipped.
#                  A diagnostic row runs when named here too
#   --diagnostics  also run the diagnostic rows, which say why a figure is what it is and
#                  decide what becomes a default, but verify nothing the check's own rows do not:
#                  the kernels under compute-sanitizer (kernels_sanitized, which also runs by
#                  itself after a failed kernels_vs_reference), the step profiler's test
#                  (profile_gpu), each opt-in's step against the composites' (optin_steps,
#                  optin_steps_kernels), training runs with the composites only, with batch_prep
#                  or dw_conv_dgrad, with the attention on cuDNN (train.attention=cudnn), and
#                  launched eagerly (no CUDA graph), and the attention's ATen paths.
#                  Without it the check takes about 7.5 minutes on an H100 with --prebuilt.
#                  kernel_counters (Nsight Compute's counters of our kernels in a step, two
#                  minutes) runs only when --only names it
#   --baseline DIR a prebuilt of another commit (launch/gpu-prebuild.sh in a worktree of it):
#                  its coatnet_0 run is timed and profiled beside ours, in the same run, so a
#                  change of speed between commits is told from a change of machine
#   --skip-build   reuse build-gpu/ from an earlier run on the same machine
#
# 1. builds the project into build-gpu/ against that python's torch (Torch_DIR from
#    torch.utils.cmake_prefix_path), with all cores;
# 2. runs the GPU tests: NCCL collectives and SyncBatchNorm at world size 1 (one GPU holds one
#    NCCL rank; a second is refused with a clear error) and the MPI path across 2 ranks beside
#    it, the pinned loader, bf16 and fp16 training against fp32, non-finite steps skipped on the
#    device, a checkpoint saved from the GPU and resumed bit-exactly, the kernels against their
#    references, the step as a CUDA graph against the eager step (train.cuda_graph), no host
#    wait inside a step (train.sync_check); with --diagnostics also the step profiler's test and
#    the kernels' tests under compute-sanitizer (memcheck, racecheck, synccheck);
# 3. benchmarks in the same run: coatnet_0_224 bf16 channels-last training images/s at batch 128
#    (ours, with its GPU defaults: the step as one CUDA graph, the bn_gelu_se_mean kernel,
#    train.pointwise_gemm, train.se_fold, train.bn_fold, profiled: GPU busy share, top kernels;
#    timm eager AMP channels-last; timm +
#    torch.compile), MFU against the datasheet and against a bf16 matrix product measured here,
#    each kernel and rewrite against its ATen composite, and the loader's images/s on this
#    machine's cores (photo-like JPEGs made here from scikit-image's photos) against what the
#    GPU consumes; with --diagnostics also ours with ATen's composites only, with each opt-in
#    kernel (batch_prep, dw_conv_dgrad), with the attention on cuDNN and launched eagerly (no
#    CUDA graph), each rewrite's training step against the composites' interleaved in one
#    process (bench_optins), and the relative-position attention's ATen paths.
# Prints the table last. Without a GPU it says so, names what it would run, and exits 77.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; }  # the header
bundle="" prebuilt="" out=${OUT:-$PWD/gpu-check-out} skip_build=0 deadline=540 only="" baseline=""
diagnostics=0
while (($#)); do
  case $1 in
    --bundle) bundle=${2:?--bundle needs a directory}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --prebuilt) prebuilt=${2:?--prebuilt needs a directory}; shift 2 ;;
    --deadline) deadline=${2:?--deadline needs seconds}; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --only) only=",${2:?--only needs names},"; shift 2 ;;
    --diagnostics) diagnostics=1; shift ;;
    --baseline) baseline=${2:?--baseline needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
py=${COATNET_GPU_PYTHON:-$(command -v python3 || true)}
say() { printf '[gpu-check %(%T)T] %s\n' -1 "$*"; }
t_start=$(date +%s)

# --- a GPU, or exit 77 with the plan -----------------------------------------------------------
why=""
if ! command -v nvidia-smi >/dev/null; then
  why="nvidia-smi not found"
elif ! nvidia-smi -L >/dev/null 2>&1; then
  why="nvidia-smi sees no GPU"
elif [[ -z $py ]] || ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  why="python3's torch sees no CUDA device (python: ${py:-none})"
fi
if [[ -n $why ]]; then
  echo "gpu-check: no GPU here ($why): skipped. On a machine with an NVIDIA GPU it would"
  echo "  build build-gpu/ against that machine's torch, run the GPU tests (NCCL and SyncBatchNorm"
  echo "  at W=1, MPI across 2 ranks, pinned loader, bf16/fp16 vs fp32 training, GPU checkpoint"
  echo "  resumed bit-exactly, the kernels of src/cuda against their references and under"
  echo "  compute-sanitizer, the step as a CUDA graph against the eager step, no host wait"
  echo "  inside a training step), then time"
  echo "  coatnet_0_224 bf16 training (ours, ours with each opt-in kernel, timm eager, timm +"
  echo "  torch.compile), MFU, each kernel against its ATen composite, the longest kernels'"
  echo "  launching operators, and the loader against what the GPU consumes."
  exit 77
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/coatnet-gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
results="$out/results.tsv"  # name <TAB> status <TAB> seconds <TAB> detail (JSON or text)
: >"$results"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }
gpu_name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
say "GPU: $gpu_name; $(nproc) cores; torch $("$py" -c 'import torch; print(torch.__version__)')"

# --- the bundle: system libraries this machine lacks --------------------------------------------
if [[ -n $bundle ]]; then
  archive="$bundle/coatnet-gpu-bundle.tar.xz"
  [[ -f $archive ]] || { echo "gpu-check: $archive not found (make it with launch/gpu-bundle.sh)" >&2; exit 1; }
  source "$root/launch/gpu-env.sh" "$archive" || exit 1
  prefix_path="$B/usr"
  say "bundle: $B ($(ls "$B/fallback-used" | wc -l) fallback libraries used)"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# --- 1. build (or a prebuilt that runs here) -----------------------------------------------------
# A build made elsewhere finds this machine's LibTorch and the NVIDIA libraries beside it through
# the library path (its own run path names the machine it was built on).
torch_dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
nvidia_libs=$(ls -d "$(dirname "$torch_dir")"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$torch_dir/lib:$nvidia_libs${LD_LIBRARY_PATH:-}"
build="$root/build-gpu"
if [[ -n $prebuilt ]]; then
  if "$prebuilt/bin/coatnet" plugins >"$out/prebuilt.log" 2>&1 && grep -q comm-nccl "$out/prebuilt.log"; then
    build=$(cd "$prebuilt" && pwd) skip_build=1
    record build "pass (prebuilt)" 0 "$(head -c 150 "$prebuilt/BUILD_INFO" 2>/dev/null)"
  else
    say "the prebuilt $prebuilt does not run here (prebuilt.log): building instead"
    tail -5 "$out/prebuilt.log"
  fi
fi
torch_prefix=$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
if ((!skip_build)) || [[ ! -x $build/bin/coatnet ]]; then
  say "building $build against $torch_prefix"
  t0=$(date +%s)
  if TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} cmake -S "$root" -B "$build" -G Ninja \
       -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix${prefix_path:+;$prefix_path}" \
       -DCOATNET_PYTHON="$py" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$out/configure.log" 2>&1 &&
     cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1; then
    record build pass $(($(date +%s) - t0)) "$(grep -o 'coatnet: [A-Za-z ]* *found[^"]*' "$out/configure.log" | head -3 | tr '\n' ';')"
  else
    record build FAIL $(($(date +%s) - t0)) "see configure.log / build.log"
    tail -30 "$out/configure.log" "$out/build.log"
  fi
fi
coatnet="$build/bin/coatnet"
[[ -x $coatnet ]] || { say "no build: stopping"; cat "$results"; exit 1; }
# Steps a failure asks for, whatever --only and --diagnostics say (kernels_sanitized).
asked_by_failure=","
# selected KIND NAME: whether --only (if given) names this step and, for a diagnostic, whether
# --diagnostics or --only asks for it; else it is recorded as skipped.
selected() {
  [[ $asked_by_failure == *",$2,"* ]] && return 0
  if [[ -n $only && $only != *",$2,"* ]]; then
    record "$1 $2" "skip (--only)" 0 ""
    return 1
  fi
  [[ $on_request != *",$2,"* || $only == *",$2,"* ]] && return 0
  local how="--diagnostics, or name it in --only"
  [[ $2 == kernel_counters ]] && how="name it in --only"
  record "$1 $2" "skip (on request: $how)" 0 ""
  return 1
}
# The diagnostic rows (--diagnostics), and Nsight Compute's counters (two minutes, only needed
# to say why a kernel is slow), which run only when --only names them. The rest, the check
# itself, fits 8 minutes of an H100 (docs/GPU.md, "gpu-check").
on_request=",kernel_counters,"
((diagnostics)) || on_request+="kernels_sanitized,profile_gpu,optin_steps,optin_steps_kernels,\
attention_composite,ours_coatnet_0_bf16_composites,ours_coatnet_0_bf16_batch_prep,\
ours_coatnet_0_bf16_dw_conv,ours_coatnet_0_bf16_eager,ours_coatnet_0_bf16_cudnn_attention,"
# left SECONDS: how much of --deadline remains (0 when spent)
left() { local l=$((deadline - ($(date +%s) - t_start))); echo $((l > 0 ? l : 0)); }

# --- 2. tests -------------------------------------------------------------------------------------
# test NAME COMMAND...: pass, FAIL, or skip (exit 77 / gtest skips only), with its log.
test_step() {  # NAME SECONDS_LIMIT COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s) rc
  selected test "$name" || return 0
  ((limit > $(left))) && limit=$(left)
  ((limit < 10)) && { record "test $name" "skip (deadline)" 0 "--deadline $deadline reached"; return; }
  say "test: $name"
  timeout -k 10 "$limit" "$@" >"$out/test-$name.log" 2>&1
  rc=$?
  ((rc == 124 || rc == 137)) && echo "gpu-check: stopped after ${limit} s" >>"$out/test-$name.log"
  local secs=$(($(date +%s) - t0)) status=pass
  ((rc == 77)) && status=skip
  ((rc != 0 && rc != 77)) && status=FAIL
  grep -q "SKIPPED \] [1-9]" "$out/test-$name.log" && [[ $status == pass ]] &&
    status="pass (some skipped: $(grep -m1 -A1 'Skipped' "$out/test-$name.log" | tail -1))"
  record "test $name" "$status" "$secs" "$(grep -E 'PASS|against float32|resumed|mean' "$out/test-$name.log" | head -4 | tr '\n' ';')"
  [[ $status == FAIL ]] && tail -20 "$out/test-$name.log"
}
test_step nccl_syncbn_w1 120 "$build/bin/coatnet_dist_tests"
# With Open MPI's own choice of shared-memory copy (CMA where it works): images that set
# OMPI_MCA_btl_vader_single_copy_mechanism=none (the GPU machine's does) make a bucket's fragments
# move only while both ranks are inside MPI, and no all-reduce completes during backward there.
test_step mpi_w2 120 env -u OMPI_MCA_btl_vader_single_copy_mechanism \
  mpirun -np 2 --bind-to none "$build/bin/coatnet_dist_tests"
# One NCCL rank more than the GPUs: comm-nccl ends the job naming the two ranks on one GPU.
test_step nccl_shared_gpu 90 env COATNET_TEST_DEVICE=cuda \
  bash "$root/tests/train/train_mpi.sh" shared_gpu "$coatnet" "$py"
test_step pinned_loader 60 "$build/bin/coatnet_tests" --gtest_filter='*Pinned*:*Gpu*'
test_step precision_gpu 150 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/train/train_mpi.sh" precision "$coatnet" "$py"
test_step nonfinite_gpu 120 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/train/train_mpi.sh" nonfinite "$coatnet" "$py"
test_step resume_gpu 120 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/checkpoint/ckpt_mpi.sh" resume "$coatnet" "$py"
test_step kernels_vs_reference 90 "$build/bin/coatnet_tests" --gtest_filter='BatchPrep*:BnGelu*:DwConv*:Model.*OnGpu'
# The kernels' GPU tests under compute-sanitizer (memcheck, racecheck, synccheck: accesses past
# a tensor's end, shared-memory races, barriers not all threads reach). After a failed comparison
# it runs even when --only leaves it out: it is what says where a kernel goes wrong.
grep -q $'^test kernels_vs_reference\tFAIL' "$results" && asked_by_failure+="kernels_sanitized,"
test_step kernels_sanitized 150 env SANITIZE_LOG_DIR="$out" \
  bash "$root/tests/cuda/sanitize_kernels.sh" "$build"
test_step profile_gpu 60 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/train/train_mpi.sh" profile "$coatnet" "$py"
test_step cuda_graph_gpu 180 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/train/train_mpi.sh" cuda_graph "$coatnet" "$py"
# No training step makes the host wait for the GPU (train.sync_check=error), and one that reads
# a value back is caught, naming the step.
test_step sync_free_gpu 120 env COATNET_TEST_DEVICE=cuda COATNET_TEST_MAX_NP=1 \
  bash "$root/tests/train/train_mpi.sh" sync_free "$coatnet" "$py"


# --- 3. benchmarks --------------------------------------------------------------------------------
bench() {  # NAME SECONDS_LIMIT COMMAND... : its last line of output (JSON) is the result
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  selected bench "$name" || return 0
  ((limit > $(left))) && limit=$(left)
  ((limit < 15)) && { record "bench $name" "skip (deadline)" 0 "--deadline $deadline reached"; return; }
  say "bench: $name"
  if timeout -k 10 "$limit" "$@" >"$out/bench-$name.log" 2>&1; then
    record "bench $name" ok $(($(date +%s) - t0)) "$(grep '^{' "$out/bench-$name.log" | tail -1)"
  else
    local rc=$? status=FAIL
    # A peer that fails (timm + torch.compile on some torch versions) is reported, but it is not
    # this project's failure: the check's exit status is about our code. Exit 77: a tool this
    # machine cannot run (ncu without counters), skipped with its reason.
    [[ $name == timm_* ]] && status="FAIL (peer)"
    ((rc == 77)) && status=skip
    record "bench $name" "$status" $(($(date +%s) - t0)) \
      "exit $rc: $(grep -v '^\s*$' "$out/bench-$name.log" | tail -1 | cut -c1-120)"
    tail -5 "$out/bench-$name.log"
  fi
}
bench matmul_bf16 60 "$py" - <<'PY'
import json, torch
n = 8192
a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
for _ in range(3): a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
times = []
for _ in range(10):
    start.record(); a @ b; end.record(); torch.cuda.synchronize(); times.append(start.elapsed_time(end))
ms = sorted(times)[len(times) // 2]
print(json.dumps({"device": torch.cuda.get_device_name(), "tflops": 2 * n**3 / ms / 1e9}))
PY
# Photo-like JPEGs, packed: the data for our training run and the loader benchmark.
say "making 1000 photo-like JPEGs and packing them"
timeout 120 "$py" "$root/tests/bench/make_photo_set.py" "$work/photos" 1000 >"$out/photos.log" 2>&1 &&
  "$coatnet" pack imagefolder "$work/photos" "$work/train" --records-per-shard 250 >>"$out/photos.log" 2>&1 ||
  { record "photo set" FAIL 0 "see photos.log"; tail -5 "$out/photos.log"; }

ours_args=(--config "$root/configs/coatnet_0_imagenet1k.yaml" --set "data.train=[$work/train-*.h5]"
           --set "data.val=[]" --set data.batch_size=128 --set precision.backend=bf16
           --set data.channels_last=true --set model.drop_path=0 --set aug.randaugment_n=0
           --set aug.mixup=0 --set aug.cutmix=0 --set train.max_steps=56
           --set train.profile_start=50 --set train.profile_steps=5
           --set train.log_every_steps=10 --set train.device=cuda --set "train.run_dir=$work/runs"
           --set train.name=ours --set train.progress=lines --set checkpoint.enabled=false)
# Steady images/s of our run from its metrics.jsonl, leaving out the first (warm-up) window and
# the profiled steps after step 50; with the profile of steps 51-55 (GPU busy share, top kernels).
cat >"$work/steady.py" <<'PY'
import json, os, sys
recs = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
tr = [r for r in recs if r["type"] == "train" and r["step"] <= 50][1:]
step = sum(r["step_s"] for r in tr) / len(tr)
out = {"images_per_s": sum(r["images_per_s"] for r in tr) / len(tr), "step_ms": step * 1e3,
       "data_share": sum(r["data_wait_s"] for r in tr) / len(tr) / step,
       "loss_steps_41_50": tr[-1]["loss"] if tr else None,  # the window of steps 41-50
       # the most any window's tensors held (CUDA's caching allocator), and the GPU's size
       "peak_memory_gib": max((r.get("peak_memory_gib", -1) for r in tr), default=None),
       "device_memory_gib": tr[-1].get("device_memory_gib") if tr else None}
prof = sys.argv[1] + "/profile/summary.json"
if os.path.exists(prof):
    p = json.load(open(prof))
    out["profile"] = {k: p[k] for k in ("wall_ms_per_step", "busy_ms_per_step", "busy_share",
                                        "kernels_per_step")}
    out["profile"]["top"] = [[t["name"][:90], round(t["ms_per_step"], 3), round(t["share_of_busy"], 4)]
                             for t in p["top"][:30]]
print(json.dumps(out))
PY
# ours_run.sh NAME COATNET [--set ...]: a timed and profiled run (a script, for `timeout`); its
# profile is kept in $out.
{
  echo 'set -u; name=$1 bin=$2; shift 2'
  echo "args=($(printf '%q ' "${ours_args[@]}")); work=$(printf '%q' "$work") out=$(printf '%q' "$out") py=$(printf '%q' "$py") root=$(printf '%q' "$root")"
  cat <<'SH'
"$bin" train "${args[@]}" --set "train.name=$name" "$@" >"$work/runs-$name.log" 2>&1 ||
  { tail -20 "$work/runs-$name.log"; exit 1; }
if [[ -f $work/runs/$name/profile/summary.json ]]; then
  cp "$work/runs/$name/profile/summary.json" "$out/profile-$name.json"
  gzip -c "$work/runs/$name/profile/trace.json" >"$out/trace-$name.json.gz"
  # The operators (with their inputs' strides) behind the longest kernels: small, unlike the trace.
  "$py" "$root/tests/bench/trace_ops.py" "$work/runs/$name/profile/trace.json" --steps 5 \
    >"$out/ops-$name.json" 2>>"$work/runs-$name.log" || true
fi
"$py" "$work/steady.py" "$work/runs/$name"
SH
} >"$work/ours_run.sh"
bench ours_coatnet_0_bf16 180 bash "$work/ours_run.sh" ours "$coatnet"
# Ours with ATen's composites only (no kernel of src/cuda, no fold): what the GPU defaults give.
bench ours_coatnet_0_bf16_composites 180 bash "$work/ours_run.sh" ours_co "$coatnet" \
  --set "train.cuda_kernels=[]" --set train.pointwise_gemm=false --set train.se_fold=false \
  --set train.bn_fold=false
# What `coatnet info --batch` plans for that run (its step memory measured on this CPU), against
# the peak the run's allocator reported.
bench memory_plan 90 "$coatnet" info --model coatnet_0_224 --batch 128 --precision bf16 --json
[[ -n $baseline ]] &&
  bench ours_baseline_coatnet_0_bf16 180 bash "$work/ours_run.sh" base "$baseline/bin/coatnet"
peer=("$py" "$root/tests/bench/timm_train_bench.py" --model coatnet_0_224 --image-size 224
      --in-chans 3 --num-classes 1000 --batch 128 --device cuda --amp bf16 --channels-last
      --threads "$(nproc)")
bench timm_eager_bf16 120 "${peer[@]}" --warmup 5 --steps 30 --profile 5
bench kernels 90 "$build/bin/bench_kernels" --batch 128 --size 224
# Each opt-in's step against the default's, interleaved in one process (a minute, where a training
# run per opt-in takes half a minute each): the ATen folds, then the CUDA kernels and all at once
# in a process of their own (a kernel that faults on the GPU ends its process).
optins=("$build/bin/bench_optins" --device cuda --model coatnet_0_224 --batch 128 --json)
bench optin_steps 150 "${optins[@]}" --variants default,bn_fold,bn_fold_every,se_fold,pointwise_gemm
# gpu_defaults: what a GPU run gets by default; all: those, bn_gelu_se_mean and dw_conv_dgrad.
bench optin_steps_kernels 150 "${optins[@]}" \
  --variants default,bn_gelu,bn_gelu_se_mean,dw_conv_dgrad,gpu_defaults,all
# Nsight Compute's counters of our kernels in a training step (on request: name it in --only).
bench kernel_counters 150 bash "$root/tests/bench/kernel_counters.sh" "$build" "$out" "$py"
bench attention_composite 60 "$py" "$root/tests/bench/attention_bench.py" --batch 128
# The step launched from the host, not replayed as a CUDA graph (the default at one rank): what
# launching ~1,750 kernels a step from the host costs.
bench ours_coatnet_0_bf16_eager 180 bash "$work/ours_run.sh" ours_eager "$coatnet" \
  --set "train.cuda_graph=false"
bench ours_coatnet_0_bf16_batch_prep 180 bash "$work/ours_run.sh" ours_bp "$coatnet" \
  --set "train.cuda_kernels=[auto, batch_prep]"
# The defaults with the depthwise stride-2 convolution's input gradient from our kernel.
bench ours_coatnet_0_bf16_dw_conv 180 bash "$work/ours_run.sh" ours_dw "$coatnet" \
  --set "train.cuda_kernels=[auto, dw_conv_dgrad]"
# The defaults with the T blocks' attention on cuDNN's fused kernel (train.attention=cudnn): if
# it takes the bias with its gradient and trains faster, the model should ask for it.
bench ours_coatnet_0_bf16_cudnn_attention 180 bash "$work/ours_run.sh" ours_cudnn "$coatnet" \
  --set "train.attention=cudnn"
bench loader_cores 120 "$coatnet" data bench "$work"/train-*.h5 --threads "$(nproc)" --batch 128 \
  --batches 40 --uint8 --json
# timm's fused attention (scaled_dot_product_attention with its bias) fails to compile for training
# on torch 2.11 ("(*bias): last dimension must be contiguous" in the memory-efficient backward), so
# the compiled peer runs timm's own non-fused attention (TIMM_FUSED_ATTN=0), which Inductor fuses.
bench timm_compile_bf16 200 env TIMM_FUSED_ATTN=0 "${peer[@]}" --compile --warmup 3 --steps 30

# --- the table and the JSON -----------------------------------------------------------------------
"$py" "$root/launch/gpu-check-table.py" "$results" "$out" "$gpu_name" "$(($(date +%s) - t_start))" \
  "$("$coatnet" info --model coatnet_0_224 --json)"
