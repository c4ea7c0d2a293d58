#!/usr/bin/env bash
# `coatnet train` and `coatnet eval` under real mpirun on a small synthetic IDX dataset.
# usage: train_mpi.sh MODE COATNET PYTHON
#   MODE: equivalence | eval_counts | timeout | errors | nonfinite | precision | profile |
#         cuda_graph (on a CPU with the graph emulated) | shared_gpu, sync_free (a GPU only)
set -euo pipefail
mode=$1 coatnet=$2 py=$3
here=$(cd "$(dirname "$0")" && pwd)
if [[ $mode == shared_gpu && ${COATNET_TEST_DEVICE:-} != cuda ]]; then
  echo "skipped: two NCCL ranks on one GPU need a GPU (gpu-check runs it with COATNET_TEST_DEVICE=cuda)"
  exit 77
fi
if [[ $mode == sync_free && ${COATNET_TEST_DEVICE:-} != cuda ]]; then
  echo "skipped: a CPU step never waits for a GPU; train.sync_check needs one (gpu-check runs it with COATNET_TEST_DEVICE=cuda)"
  exit 77
fi
work=$(mktemp -d /tmp/coatnet_train_test.XXXXXX)
trap 'rm -rf "$work"' EXIT
source "$here/tiny_env.sh"

# A skipped step changes no parameter: NaN at step 3 of 4 gives the parameters of 3 clean steps
# (with a constant learning rate, so the step numbers do not matter). BatchNorm's running
# statistics did see step 3's forward, as under torch.amp.GradScaler.
# usage: skipped_step_moves_nothing NAME EXTRA_ARGS...
skipped_step_moves_nothing() {
  local name=$1
  shift
  local c=(--set schedule.type=constant --set schedule.warmup_steps=0 --set "data.val=[]" "$@")
  "$coatnet" train "${common[@]}" "${c[@]}" --set train.max_steps=3 --set "train.name=${name}3" >/dev/null
  COATNET_FAULT_NAN_STEPS=3-3 "$coatnet" train "${common[@]}" "${c[@]}" --set train.max_steps=4 \
    --set "train.name=${name}4" >/dev/null
  "$py" - "$work/runs/${name}3/final.safetensors" "$work/runs/${name}4/final.safetensors" <<'PY' ||
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
stats = ("running_mean", "running_var", "num_batches_tracked")
bad = [k for k in a if not k.endswith(stats) and (a[k] != b[k]).any()]
sys.exit(f"a skipped step changed {bad}" if bad else 0)
PY
    fail "a skipped step ($name) changed parameters"
}

case $mode in
equivalence)
  # The whole trainer at 2 ranks x 8 images per step against 1 rank x 16 (the same global
  # batches, SyncBN on, the default recipe): the loss of every step agrees to fp32 rounding, and
  # a rerun at 2 ranks is bit-identical. The reduction itself is proven on the gradients
  # (GradEquivalence.* in coatnet_dist_tests: a sum instead of a mean, or a bucket left out,
  # fails there; AdamW would hide the first here, being nearly blind to a gradient's scale). The
  # weights are not compared: the pre-norm BatchNorm biases feed another BatchNorm, which
  # cancels them, so their true gradient is 0 and Adam turns its rounding noise into ±lr steps
  # (measured 1.1e-4 of max |w| apart after 6 steps) that change no output.
  steps=(--set train.max_steps=6 --set dist.sync_bn=true)
  "$coatnet" train "${common[@]}" "${steps[@]}" --set train.name=w1 >"$work/w1.log"
  mpi 2 "$coatnet" train "${common[@]}" "${steps[@]}" --set train.name=w2 >"$work/w2.log"
  mpi 2 "$coatnet" train "${common[@]}" "${steps[@]}" --set train.name=w2b >/dev/null
  "$py" - "$work/runs/w1/metrics.jsonl" "$work/runs/w2/metrics.jsonl" <<'PY' ||
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"type":"train"' in l] for p in sys.argv[1:])
assert len(a) == len(b) == 6, (len(a), len(b))
# Each log step's memory peak (the largest rank's resident set on a CPU), and the summary's.
for p in sys.argv[1:]:
    recs = [json.loads(l) for l in open(p)]
    peaks = [r["peak_memory_gib"] for r in recs if r["type"] == "train"]
    assert all(r["peak_memory_of"] == "cpu_rss" for r in recs if r["type"] == "train"), recs[1]
    assert len(peaks) == 6 and all(0.05 < m < 64 for m in peaks), peaks
    assert [r for r in recs if r["type"] == "summary"][0]["peak_memory_gib"] == max(peaks), p
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"W=1 vs W=2, losses of 6 steps: max relative difference {worst:.2e}")
sys.exit(0 if worst < 1e-5 else 1)
PY
    fail "the losses of 2 ranks x B and 1 rank x 2B differ by more than 1e-5 (relative)"
  grep -Eq 'img/s  mem [0-9]+\.[0-9]G  ETA' "$work/w1.log" && grep -q '^\[summary\] peak memory: ' "$work/w1.log" ||
    { cat "$work/w1.log"; fail "no memory figure in the progress lines or the summary"; }
  # The banner says what `auto` resolved to (fp32 and no channels-last on a CPU; bf16 and
  # channels-last with the GPU's name on one).
  grep -q "thread(s) on cpu, fp32, comm mpi" "$work/w1.log" ||
    { head -3 "$work/w1.log"; fail "the banner does not name the device and the precision"; }
  read -r abs2 _ < <(compare "$work/runs/w2/final.safetensors" "$work/runs/w2b/final.safetensors")
  [[ $abs2 == 0.000e+00 ]] || fail "two identical W=2 runs differ by $abs2"
  # uint8 batches normalised on the device (the CUDA default) train exactly as float ones.
  "$coatnet" train "${common[@]}" "${steps[@]}" --set data.dtype=uint8 --set train.name=w1u8 \
    >/dev/null
  read -r abs3 _ < <(compare "$work/runs/w1/final.safetensors" "$work/runs/w1u8/final.safetensors")
  [[ $abs3 == 0.000e+00 ]] || fail "data.dtype=uint8 and float32 runs differ by $abs3"
  grep -q '"type":"eval"' "$work/runs/w2/metrics.jsonl" || fail "no eval record in metrics.jsonl"
  grep -q '"type":"env"' "$work/runs/w2/metrics.jsonl" || fail "no env record in metrics.jsonl"
  grep -q '\[summary\]' "$work/w2.log" || fail "no summary printed"
  "$coatnet" plot "$work/runs/w2" >/dev/null
  for f in loss lr accuracy throughput; do
    head -c 8 "$work/runs/w2/$f.png" | od -An -tx1 | grep -q '89 50 4e 47' || fail "$f.png is not a PNG"
  done
  echo "PASS: equivalence, determinism, uint8 batches, metrics, plot"
  ;;
eval_counts)
  # 101 validation samples: each counted once at world sizes 1, 2, 3, with the same accuracy.
  ref=""
  for np in 1 2 3; do
    out=$(mpi "$np" "$coatnet" eval "${common[@]}" --set data.batch_size=8 --json)
    samples=$(echo "$out" | "$py" -c "import json,sys; print(json.load(sys.stdin)['samples'])")
    top1=$(echo "$out" | "$py" -c "import json,sys; print(json.load(sys.stdin)['top1'])")
    echo "W=$np: samples $samples, top-1 $top1"
    [[ $samples == 101 ]] || fail "W=$np counted $samples samples, expected 101"
    [[ -z $ref || $top1 == "$ref" ]] || fail "W=$np top-1 $top1 differs from W=1's $ref"
    ref=$top1
  done
  echo "PASS: eval counts"
  ;;
timeout)
  # Rank 1 stops taking part at step 2; rank 0 must abort with a message naming itself, the
  # operation and the step within timeout + a few seconds.
  start=$(date +%s)
  set +e
  COATNET_FAULT_STALL_RANK=1 COATNET_FAULT_STALL_STEP=2 timeout 120 \
    mpirun --oversubscribe -np 2 -x COATNET_FAULT_STALL_RANK -x COATNET_FAULT_STALL_STEP \
    "$coatnet" train "${common[@]}" --set dist.timeout_s=5 --set train.name=stall \
    >"$work/stall.log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  echo "exit $rc after $took s"; grep "did not complete" "$work/stall.log" || true
  [[ $rc != 0 && $rc != 124 ]] || fail "expected an abort (rc $rc)"
  grep -q "\[rank 0\] coatnet: error: collective .* at step 2 did not complete within dist.timeout_s = 5 s on $(hostname): rank 1 (on $(hostname)) has stopped taking part" \
    "$work/stall.log" || { cat "$work/stall.log"; fail "no timeout message naming rank, op, step and the silent rank"; }
  (( took < 40 )) || fail "abort took $took s (timeout 5 s)"
  # Stalled after its update, at 3 ranks: the others wait in the step-boundary agreement (a
  # World collective, not the comm plugin's), which has the same deadline; the message names
  # rank 2 alone — rank 1, waiting too, answers.
  start=$(date +%s)
  set +e
  COATNET_FAULT_STALL_RANK=2 COATNET_FAULT_STALL_STEP=2 COATNET_FAULT_STALL_AT=boundary \
    timeout 120 mpirun --oversubscribe -np 3 -x COATNET_FAULT_STALL_RANK \
    -x COATNET_FAULT_STALL_STEP -x COATNET_FAULT_STALL_AT "$coatnet" train "${common[@]}" \
    --set data.batch_size=12 --set dist.timeout_s=5 --set train.name=stall2 >"$work/stall2.log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  echo "boundary stall: exit $rc after $took s"
  [[ $rc != 0 && $rc != 124 ]] || fail "expected an abort at the boundary (rc $rc)"
  grep -q "\[rank 0\] coatnet: error: collective 'stop-signal agreement' at step 2 did not complete within dist.timeout_s = 5 s on $(hostname): rank 2 (on $(hostname)) has stopped taking part" \
    "$work/stall2.log" || { cat "$work/stall2.log"; fail "no timeout message for the step-boundary agreement"; }
  (( took < 40 )) || fail "abort took $took s (timeout 5 s)"
  echo "PASS: timeout"
  ;;
errors)
  # A global batch that does not split over the ranks: a clear error, and the job ends.
  set +e
  out=$(timeout 120 mpirun --oversubscribe -np 3 "$coatnet" train "${common[@]}" 2>&1)
  rc=$?
  set -e
  [[ $rc != 0 && $rc != 124 ]] || fail "expected failure (rc $rc)"
  echo "$out" | grep -q "data.batch_size = 16 is not divisible by the world size 3" ||
    { echo "$out"; fail "no message about the batch size"; }
  # fails_with WHAT MESSAGE SETTING...: one rank's run with these settings ends with exit 1 and
  # MESSAGE.
  fails_with() {
    local what=$1 message=$2 out rc
    shift 2
    set +e
    out=$("$coatnet" train "${common[@]}" "$@" 2>&1)
    rc=$?
    set -e
    [[ $rc == 1 ]] || fail "$what: expected exit 1, got $rc"
    echo "$out" | grep -qF -- "$message" || { echo "$out"; fail "$what: no message '$message'"; }
  }
  fails_with "nccl without a GPU" "nccl needs a GPU" --set dist.backend=nccl
  fails_with "an unknown CUDA kernel" \
    "train.cuda_kernels: unknown kernel 'fused_all'; the kernels of src/cuda are: batch_prep, bn_gelu, bn_gelu_se_mean, dw_conv_dgrad" \
    --set "train.cuda_kernels=[batch_prep, fused_all]"
  # A kernel removed after it measured slower names why, not just "unknown".
  fails_with "a removed CUDA kernel" \
    "train.cuda_kernels: relpos_attention was removed: on an H100 it ran at 0.35-0.54x" \
    --set "train.cuda_kernels=[relpos_attention]"
  fails_with "train.cuda_graph on a CPU" \
    "train.cuda_graph = true needs a CUDA device, and this rank runs on cpu" \
    --set train.cuda_graph=true
  # Out of memory on one rank (CUDA's error, injected at step index 3 on rank 1): the job ends
  # with the error and what to change, named with the run's values, and the checkpoint of step 2
  # is what --resume auto continues from.
  oom=(--set checkpoint.every_steps=2 --set train.max_steps=4 --set train.name=oom)
  set +e
  out=$(COATNET_FAULT_OOM_STEP=3 COATNET_FAULT_OOM_RANK=1 timeout 120 \
    mpirun --oversubscribe -np 2 "$coatnet" train "${common[@]}" "${oom[@]}" 2>&1)
  rc=$?
  set -e
  [[ $rc != 0 && $rc != 124 ]] || { echo "$out"; fail "out of memory: expected the job to fail (rc $rc)"; }
  for line in "[rank 1] coatnet train: error: CUDA out of memory. Tried to allocate 2.00 GiB" \
    "out of memory on the GPU: a step of data.batch_size = 16 (8 images per rank at 2 ranks" \
    "--set data.batch_size=8 --set optim.accum_steps=2: the same 16 images per optimizer step" \
    "coatnet info --config $here/tiny.yaml --batch 16 --world-size 2" \
    "Checkpoints committed before this step are intact: --resume auto"; do
    grep -qF -- "$line" <<<"$out" || { echo "$out"; fail "out of memory: no line with '$line'"; }
  done
  out=$(mpirun --oversubscribe -np 2 "$coatnet" train "${common[@]}" "${oom[@]}" --resume auto 2>&1) ||
    { echo "$out"; fail "out of memory: --resume auto failed"; }
  grep -q "resum.*step-0*2\b" <<<"$out" || { echo "$out"; fail "out of memory: not resumed from step 2"; }
  echo "PASS: errors"
  ;;
shared_gpu)
  # One NCCL rank more than the GPUs (two ranks on the borrowed machine's one GPU): every rank
  # ends at start with comm-nccl's error naming the two ranks that would share a GPU and how to
  # start the job, not NCCL's "invalid usage" inside ncclCommInitRank, and not a hang.
  gpus=$(nvidia-smi -L | grep -c '^GPU')
  set +e
  out=$(timeout 120 mpirun --oversubscribe -np $((gpus + 1)) "$coatnet" train "${common[@]}" \
    --set dist.backend=nccl --set train.max_steps=1 --set train.name=shared 2>&1)
  rc=$?
  set -e
  [[ $rc != 0 && $rc != 124 ]] || { echo "$out"; fail "$((gpus + 1)) NCCL ranks on $gpus GPU(s): expected an error (rc $rc)"; }
  grep -q "ranks 0 and $gpus on .* would share the GPU .*NCCL needs a GPU of its own for each rank" <<<"$out" ||
    { echo "$out"; fail "no error naming the ranks that share a GPU"; }
  echo "PASS: shared_gpu"
  ;;
sync_free)
  # No training step makes the host wait for the GPU (train.sync_check=error, c10's sync debug
  # mode): not the labels' copy, Mixup/CutMix's partner rows, clipping, the non-finite check or
  # AdamW; only log, evaluation and checkpoint steps read back, and a save's background copy is
  # left alone. The positive control (no saves, which leave the steps of their copy unchecked):
  # a step that reads a value back ends the run naming it, or warns with train.sync_check=warn.
  args=(--set train.max_steps=10 --set train.log_every_steps=4 --set train.eval_every_steps=5
        --set aug.mixup=0.8 --set aug.cutmix=1.0 --set train.sync_check=error)
  "$coatnet" train "${common[@]}" "${args[@]}" --set checkpoint.every_steps=3 \
    --set train.name=free >"$work/free.log" 2>&1 ||
    { cat "$work/free.log"; fail "a training step waited for the GPU (train.sync_check=error)"; }
  grep -q "called a synchronizing" "$work/free.log" && { cat "$work/free.log"; fail "a sync warning"; }
  set +e
  COATNET_FAULT_SYNC_STEP=5 "$coatnet" train "${common[@]}" "${args[@]}" --set train.name=read \
    >"$work/read.log" 2>&1
  rc=$?
  set -e
  [[ $rc != 0 ]] || { cat "$work/read.log"; fail "a host read in step 6 passed train.sync_check=error"; }
  grep -q "train.sync_check: step 6 made the host wait for the GPU" "$work/read.log" ||
    { cat "$work/read.log"; fail "no error naming step 6"; }
  COATNET_FAULT_SYNC_STEP=5 "$coatnet" train "${common[@]}" "${args[@]}" --set train.name=warn \
    --set train.sync_check=warn >"$work/warn.log" 2>&1 || { cat "$work/warn.log"; fail "warn ended the run"; }
  grep -q "called a synchronizing CUDA operation" "$work/warn.log" ||
    { cat "$work/warn.log"; fail "train.sync_check=warn did not warn about the read in step 6"; }
  echo "PASS: sync_free"
  ;;
nonfinite)
  # Non-finite gradients, decided on the device and read back at log steps: steps 3-4 (NaN
  # loss) are skipped — weights, moments and EMA unchanged — reported, and counted in
  # skipped_steps; a longer run of them stops the job with the count, also between log steps.
  run_nan() {  # NAME NAN_STEPS EXTRA...
    local name=$1 steps=$2; shift 2
    COATNET_FAULT_NAN_STEPS=$steps mpirun --oversubscribe -np "$(ranks 2)" -x COATNET_FAULT_NAN_STEPS \
      "$coatnet" train "${common[@]}" --set train.max_steps=12 --set "data.val=[]" \
      --set precision.max_bad_steps=4 --set train.name=$name "$@"
  }
  run_nan skip 3-4 --set train.log_every_steps=5 >"$work/skip.log" 2>&1 ||
    { cat "$work/skip.log"; fail "2 NaN steps stopped the run"; }
  grep -q "2 step(s) up to step 5: non-finite gradients, step skipped" "$work/skip.log" ||
    { cat "$work/skip.log"; fail "the skipped steps were not reported at the log step"; }
  "$py" - "$work/runs/skip/metrics.jsonl" <<'PY'
import json, sys
tr = [json.loads(l) for l in open(sys.argv[1])]
tr = [r for r in tr if r["type"] == "train"]
assert [r["skipped_steps"] for r in tr] == [2, 2, 2], [r["skipped_steps"] for r in tr]
PY
  set +e
  run_nan stop 3-11 --set train.log_every_steps=100 >"$work/stop.log" 2>&1
  rc=$?
  set -e
  [[ $rc != 0 ]] || { cat "$work/stop.log"; fail "9 NaN steps in a row did not stop the run"; }
  grep -q "the gradients were not finite for [4-9] steps in a row (precision.max_bad_steps" \
    "$work/stop.log" || { cat "$work/stop.log"; fail "no message with the count"; }
  skipped_step_moves_nothing fp32 --set train.ema_decay=0.9
  echo "PASS: nonfinite"
  ;;
precision)
  # bf16 (autocast) and fp16 (autocast + loss scaling) training agree with fp32 over 300 steps:
  # the mean loss of the last 50 steps within 10%. So does bf16 with every opt-in of the model's
  # arithmetic (bf16_optin): train.pointwise_gemm, train.se_fold and train.bn_fold, and on a GPU
  # the CUDA kernels too (a CPU run ignores train.cuda_kernels).
  # On a GPU the four runs share it at once (each a small model: launch-bound, not GPU-bound),
  # which takes gpu-check a third of the time; on CPU one after another.
  pids=()
  run_precision() {  # NAME BACKEND [--set ...]
    local name=$1 backend=$2; shift 2
    "$coatnet" train "${common[@]}" --set train.max_steps=300 --set schedule.epochs=30 \
      --set "data.val=[]" --set precision.backend=$backend --set train.name=$name "$@" \
      >"$work/$name.log" 2>&1 || { tail -20 "$work/$name.log"; return 1; }
  }
  for p in fp32 bf16 fp16 bf16_optin; do
    args=("$p" "$p")
    [[ $p == bf16_optin ]] && args=(bf16_optin bf16 --set "train.cuda_kernels=[batch_prep, bn_gelu_se_mean, dw_conv_dgrad]"
      --set train.pointwise_gemm=true --set train.se_fold=true --set train.bn_fold=true
      --set data.channels_last=true)
    if [[ ${COATNET_TEST_DEVICE:-} == cuda ]]; then
      run_precision "${args[@]}" &
      pids+=($!)
    else
      run_precision "${args[@]}"
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid" || fail "a precision run failed (its log above)"; done
  "$py" - "$work/runs" <<'PY'
import json, sys
def tail_loss(name):
    recs = [json.loads(l) for l in open(f"{sys.argv[1]}/{name}/metrics.jsonl")]
    tr = [r for r in recs if r["type"] == "train"]
    return sum(r["loss"] for r in tr[-50:]) / 50, tr[0]["loss"]
ref, first = tail_loss("fp32")
print(f"fp32: first loss {first:.4f}, last-50 mean {ref:.4f}")
assert ref < 0.8 * first, "fp32 did not learn"
for p in ("bf16", "fp16", "bf16_optin"):
    got, _ = tail_loss(p)
    print(f"{p}: last-50 mean {got:.4f} ({(got - ref) / ref:+.1%} vs fp32)")
    assert abs(got - ref) < 0.1 * ref, f"{p} loss {got} vs fp32 {ref}"
PY
  # fp16 on an injected NaN at step 3 (0-based): that step is skipped, the loss scale halves and
  # its clean-step count restarts, and no parameter moves (3 clean steps == 4 with the 4th NaN).
  f=(--set precision.backend=fp16 --set "data.val=[]")
  COATNET_FAULT_NAN_STEPS=3-3 "$coatnet" train "${common[@]}" "${f[@]}" --set train.max_steps=6 \
    --set train.name=fp16nan >/dev/null
  "$py" - "$work/runs/fp16nan/metrics.jsonl" <<'PY' || fail "fp16 did not skip the NaN step as GradScaler does"
import json, sys
tr = [r for r in map(json.loads, open(sys.argv[1])) if r["type"] == "train"]
got = [(r["skipped_steps"], r["precision_scale"], r["precision_clean_steps"]) for r in tr]
want = [(0, 65536, 1), (0, 65536, 2), (0, 65536, 3), (1, 32768, 0), (1, 32768, 1), (1, 32768, 2)]
print("fp16, NaN at step 3: (skipped, scale, clean steps) per step:", got)
assert got == want, f"want {want}"
PY
  skipped_step_moves_nothing fp16 --set precision.backend=fp16
  echo "PASS: precision"
  ;;
cuda_graph)
  # train.cuda_graph: the step captured as one CUDA graph after 3 eager steps, then replayed.
  # - It trains as the eager step does (fp32, stochastic depth, EMA, clipping, warm-up then
  #   cosine; bf16 with the opt-ins, fp16): bit-identical losses and weights, as the graph runs the eager step's kernels in
  #   the same order. (No tolerance: the pre-norm BatchNorm biases, whose true gradient is 0,
  #   turn any rounding difference into ±lr steps; see equivalence.) A replay that kept the
  #   capture's batch, learning rate or random draws would be far off by step 5.
  # - NaN steps (the fault read on the device) are skipped as in the eager run: step 2, eager,
  #   and steps 3 and 4, replayed.
  # - A run stopped at step 6 and resumed (its eager steps, a new capture) ends bit-identical to
  #   the straight run, and the checkpoint taken while replaying holds the right weights.
  # Without a GPU (CI) the graph is emulated (COATNET_TEST_CUDA_GRAPH_ON_CPU, train/
  # graph_emulation.h: the device work rerun at each replay, and stopped where its operator
  # calls, arguments or memory differ from the capture's): that checks the host side — inputs
  # copied in, the learning rate and the fault on the device, nothing decided by the host
  # inside the graphed work, resumes — and not the capture itself, which gpu-check checks.
  if [[ ${COATNET_TEST_DEVICE:-} != cuda ]]; then
    export COATNET_TEST_CUDA_GRAPH_ON_CPU=1
    echo "no GPU: the CUDA graph is emulated on the CPU (its capture is checked by gpu-check only)"
  fi
  g=(--set model.drop_path=0.2 --set train.ema_decay=0.9 --set "data.val=[]"
     --set schedule.warmup_steps=4 --set train.max_steps=12)
  "$coatnet" train "${common[@]}" "${g[@]}" --set train.name=eager >/dev/null
  # The graphed run's device lags its host by 150 ms at each log step (COATNET_FAULT_DEVICE_LAG_MS:
  # the read-back of the loss waits, as for a GPU still replaying the steps the host enqueued).
  # Its images/s must count that wait: on the first GPU run they summed the host's time per step
  # only, which a replay leaves almost at once, and reported 2.2x the true figure.
  COATNET_FAULT_DEVICE_LAG_MS=150 "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true \
    --set train.name=graph >"$work/graph.log" || { cat "$work/graph.log"; fail "the graphed run failed"; }
  "$py" - "$work/runs/graph/metrics.jsonl" <<'PY' || fail "images/s left out the wait for the device"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
tr = [r for r in recs if r["type"] == "train"]  # one step per window (log_every_steps: 1)
short = [(r["step"], r["step_s"]) for r in tr if r["step_s"] < 0.15]
assert not short, f"windows shorter than the device's 150 ms lag: {short}"
assert all(r["host_step_s"] < r["step_s"] - 0.1 for r in tr), [(r["host_step_s"], r["step_s"]) for r in tr]
batch = recs[0]["global_batch"]
summary = [r for r in recs if r["type"] == "summary"][0]
assert summary["images_per_s"] < batch / 0.15, (summary["images_per_s"], batch)
print(f"step_s {min(r['step_s'] for r in tr):.3f}-{max(r['step_s'] for r in tr):.3f} s with a 150 ms lag; "
      f"host_step_s {max(r['host_step_s'] for r in tr):.3f} s at most")
PY
  same_run() {  # A B: the same per-step losses and final weights
    "$py" - "$work/runs/$1/metrics.jsonl" "$work/runs/$2/metrics.jsonl" <<'PY' || fail "$1 and $2 trained differently"
import json, sys
a, b = ([r for r in map(json.loads, open(p)) if r["type"] == "train"] for p in sys.argv[1:])
assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 12, (len(a), len(b))
# A NaN step's loss is logged as null: in both runs, at the same step.
assert [r["loss"] is None for r in a] == [r["loss"] is None for r in b], "NaN steps differ"
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b) if x["loss"] is not None)
print(f"losses of 12 steps: max relative difference {worst:.2e}")
assert worst == 0, [(x["loss"], y["loss"]) for x, y in zip(a, b)]
assert a[-1]["skipped_steps"] == b[-1]["skipped_steps"], (a[-1], b[-1])
PY
    read -r abs rel < <(compare "$work/runs/$1/final.safetensors" "$work/runs/$2/final.safetensors")
    echo "final weights: max difference $abs ($rel of their scale)"
    [[ $abs == 0.000e+00 ]] || fail "$1 vs $2: weights $abs apart"
  }
  same_run eager graph
  # The same in bf16 with every opt-in of the model's arithmetic, channels-last (their code
  # paths inside the graph; on a GPU the CUDA kernels too, which a CPU run ignores), and in fp16
  # (the loss scale, updated on the device).
  optins=(--set data.channels_last=true --set train.pointwise_gemm=true --set train.se_fold=true
          --set "train.cuda_kernels=[batch_prep, bn_gelu]")
  for p in bf16 fp16; do
    o=(--set precision.backend=$p "${optins[@]}")
    [[ $p == fp16 ]] || o+=(--set train.bn_fold=true)  # the composite in fp16 anyway (README)
    "$coatnet" train "${common[@]}" "${g[@]}" "${o[@]}" --set train.name=eager_$p >/dev/null
    "$coatnet" train "${common[@]}" "${g[@]}" "${o[@]}" --set train.cuda_graph=true \
      --set train.name=graph_$p >"$work/graph_$p.log" ||
      { cat "$work/graph_$p.log"; fail "the graphed $p run failed"; }
    same_run eager_$p graph_$p
  done
  COATNET_FAULT_NAN_STEPS=2-4 "$coatnet" train "${common[@]}" "${g[@]}" --set train.name=eager_nan >/dev/null
  COATNET_FAULT_NAN_STEPS=2-4 "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true \
    --set train.name=graph_nan >/dev/null
  "$py" - "$work/runs/graph_nan/metrics.jsonl" <<'PY' || fail "the NaN steps 2-4 of a graphed run were not skipped"
import json, sys
tr = [r for r in map(json.loads, open(sys.argv[1])) if r["type"] == "train"]
got = [r["skipped_steps"] for r in tr]
assert got == [0, 0, 1, 2] + [3] * 8, got
PY
  same_run eager_nan graph_nan
  "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true --set train.max_steps=6 \
    --set train.name=resumed >/dev/null
  "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true --set train.name=resumed \
    --resume auto >"$work/resumed.log"
  grep -q "\[resume\] .*step-00000006: step 6" "$work/resumed.log" ||
    { cat "$work/resumed.log"; fail "the graphed run did not resume from step 6"; }
  cmp "$work/runs/graph/final.safetensors" "$work/runs/resumed/final.safetensors" ||
    fail "a graphed run resumed at step 6 differs from the straight one"
  # At 2 ranks (train.cuda_graph: true; auto keeps a graph to one rank): the gradient buckets'
  # all-reduce inside the graphed step (their hooks remade on the graph's stream) and the
  # one-element fence after each replay. The emulation runs it with MPI standing in for nccl, so
  # it checks the host side, not nccl inside a capture, which needs two GPUs (never run). Each
  # rank must step with the average gradient as in the eager run: a graph whose buckets lost their
  # hooks trains each rank on its own half of the batch, and rank 0's weights differ.
  if [[ $(ranks 2) == 2 ]]; then
    # optim.zero=0: auto means ZeRO-1 at several ranks, but 0 with a graph (the norm summed by
    # range rounds differently).
    mpi 2 "$coatnet" train "${common[@]}" "${g[@]}" --set optim.zero=0 --set train.name=eager_w2 \
      >/dev/null
    mpi 2 "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true \
      --set train.name=graph_w2 >"$work/graph_w2.log" ||
      { cat "$work/graph_w2.log"; fail "the graphed run at 2 ranks failed"; }
    same_run eager_w2 graph_w2
    mpi 2 "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true \
      --set train.max_steps=6 --set train.name=resumed_w2 >/dev/null
    mpi 2 "$coatnet" train "${common[@]}" "${g[@]}" --set train.cuda_graph=true \
      --set train.name=resumed_w2 --resume auto >/dev/null
    cmp "$work/runs/graph_w2/final.safetensors" "$work/runs/resumed_w2/final.safetensors" ||
      fail "a graphed run at 2 ranks resumed at step 6 differs from the straight one"
  else
    echo "the graph at 2 ranks: skipped (one GPU holds one nccl rank)"
  fi
  echo "PASS: cuda_graph${COATNET_TEST_CUDA_GRAPH_ON_CPU:+ (emulated on the CPU)} (eager = graph, NaN steps skipped, bit-identical resume; at 2 ranks too)"
  ;;
profile)
  # train.profile_steps at 2 ranks: rank 0 writes the window's trace (valid JSON, Chrome trace
  # events) and a summary of exactly those steps, whose busy time fits in their wall time; the
  # other rank writes nothing and the run goes on to its end. On a GPU (COATNET_TEST_DEVICE) the
  # summary's entries are CUDA kernels. Eager steps (at one rank on a GPU the default would
  # capture a CUDA graph at step 4, inside this window): a replay's kernels have no operators
  # around them to credit; gpu-check's ours run profiles the graph's replays.
  mpi "$(ranks 2)" "$coatnet" train "${common[@]}" --set train.max_steps=8 --set "data.val=[]" \
    --set train.profile_start=3 --set train.profile_steps=3 --set train.cuda_graph=false \
    --set train.name=prof >"$work/prof.log"
  grep -q "profile of steps 4-6" "$work/prof.log" || fail "no profile line: $(tail -3 "$work/prof.log")"
  [[ -f $work/runs/prof/final.safetensors ]] || fail "the profiled run did not finish"
  "$py" - "$work/runs/prof/profile" "${COATNET_TEST_DEVICE:-cpu}" <<'PY' || fail "bad profile"
import json, sys
d, device = sys.argv[1], sys.argv[2]
trace = json.load(open(d + "/trace.json"))
assert trace["traceEvents"], "empty trace"
s = json.load(open(d + "/summary.json"))
assert s["steps"] == 3 and s["first_step"] == 3 and s["device"] == device, s
assert 0 < s["busy_ms_per_step"] <= s["wall_ms_per_step"] * 1.02, s
assert s["top"] and all(t["ms_per_step"] > 0 for t in s["top"]), s["top"][:3]
names = " ".join(t["name"] for t in s["top"])
# CPU: ATen operators; GPU: kernels (cuDNN, cuBLAS, ATen's own), never operator names.
assert ("aten::" in names) == (device == "cpu"), names[:300]
print(f"profile: {s['wall_ms_per_step']:.1f} ms per step, busy {s['busy_share']:.0%}, "
      f"{s['kernels_per_step']:.0f} per step; top: {s['top'][0]['name'][:60]}")
# Operators carry their inputs' shapes and strides (what trace_ops.py credits kernels with).
ops = [e for e in trace["traceEvents"] if e.get("cat") == "cpu_op" and e["name"] == "aten::add"]
assert ops and all("Input Dims" in e["args"] and "Input Strides" in e["args"] for e in ops), ops[:1]
PY
  # trace_ops.py on the real trace: GPU kernels credited to operators (none on CPU).
  "$py" "$(dirname "$0")/../bench/trace_ops.py" "$work/runs/prof/profile/trace.json" --steps 3 \
    >"$work/ops.json" || fail "trace_ops.py failed on the profile"
  "$py" - "$work/ops.json" "${COATNET_TEST_DEVICE:-cpu}" <<'PY' || fail "bad trace_ops.py output"
import json, sys
out, device = json.load(open(sys.argv[1])), sys.argv[2]
assert out["steps"] == 3 and bool(out["kernels"]) == (device != "cpu"), out
for k in out["kernels"]:
    assert k["ms_per_step"] > 0 and k["launched_by"], k
print("trace_ops:", [(k["name"][:40], k["launched_by"][0]["op"]) for k in out["kernels"][:3]])
PY
  ;;
*) fail "unknown mode $mode" ;;
esac
