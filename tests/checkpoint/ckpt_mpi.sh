#!/usr/bin/env bash
# Checkpoints under real mpirun on a small synthetic IDX dataset: exact resume, resume at
# another world size, faults during and after saving, disk full, a stop signal, and the
# `coatnet ckpt` / `coatnet export` commands.
# usage: ckpt_mpi.sh MODE COATNET PYTHON
#   MODE: resume | reshard | kill | corrupt | diskfull | signal | cli | zero
set -euo pipefail
mode=$1 coatnet=$2 py=$3
here=$(cd "$(dirname "$0")" && pwd)
train_dir=$(cd "$here/../train" && pwd)
work=$(mktemp -d /tmp/coatnet_ckpt_test.XXXXXX)
cleanup() {
  for m in full spacious; do
    mountpoint -q "$work/$m" 2>/dev/null && umount "$work/$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT
source "$train_dir/tiny_env.sh"
# EMA and stochastic depth on, so that their state and randomness must be restored too; two
# epochs of 16 steps, a checkpoint every 5 steps.
common+=(--set train.ema_decay=0.9 --set model.drop_path=0.2 --set schedule.epochs=2
         --set checkpoint.every_steps=5)
ckroot() { echo "$work/runs/$1/checkpoints"; }

# The per-step train records of two runs, from step $3 on: loss and data stream equal
# (exactly, or within a relative tolerance $4 for the loss); skipped steps and the precision
# plugin's state (fp16's loss scale) exactly.
same_steps() {
  "$py" - "$work/runs/$1/metrics.jsonl" "$work/runs/$2/metrics.jsonl" "$3" "${4:-0}" <<'PY'
import json, sys
def steps(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if r["type"] == "train" and r["step"] > int(sys.argv[3]):
            out[r["step"]] = r  # a resumed run's later record wins
    return out
a, b = steps(sys.argv[1]), steps(sys.argv[2])
tol = float(sys.argv[4])
assert a.keys() == b.keys() and a, f"different steps logged: {sorted(a)} vs {sorted(b)}"
worst = 0.0
for s in sorted(a):
    assert a[s]["data_hash"] == b[s]["data_hash"], f"step {s}: different samples"
    d = abs(a[s]["loss"] - b[s]["loss"]) / abs(a[s]["loss"])
    assert d <= tol, f"step {s}: loss {a[s]['loss']} vs {b[s]['loss']} (relative {d:.2e})"
    worst = max(worst, d)
    for k in a[s]:  # fp16's loss scale and clean-step count, the skipped steps: restored exactly
        if k.startswith("precision_") or k == "skipped_steps":
            assert a[s][k] == b[s].get(k), f"step {s}: {k} {a[s][k]} vs {b[s].get(k)}"
def evals(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if r["type"] == "eval" and r["step"] > int(sys.argv[3]):
            out[(r["step"], r["ema"])] = (r["val_top1"], r["val_loss"])
    return out
if tol == 0:  # exact modes: evaluations equal too (BatchNorm statistics of every rank restored)
    ea, eb = evals(sys.argv[1]), evals(sys.argv[2])
    assert ea == eb, f"evaluations differ: {ea} vs {eb}"
print(f"steps {min(a)}..{max(a)}: same samples, loss within {tol} (max relative {worst:.1e})")
PY
}

# The shard checksums of one checkpoint's manifest (equal state → byte-equal shards).
shard_sums() { grep '^    xxh3:' "$1/manifest.yaml" | tr -d ' '; }

expect_fail() {  # expect_fail LOG CMD...: the command must exit non-zero
  set +e
  "${@:2}" >"$1" 2>&1
  local rc=$?
  set -e
  [[ $rc != 0 ]] || { cat "$1"; fail "expected a failure: ${*:2}"; }
}

case $mode in
resume)
  # 20 steps straight vs 10 steps, stop, resume, 10 more: identical parameters, optimizer
  # state and EMA (byte-equal shards), identical data order and losses; at W=2 and W=1.
  # W=1 runs fp16, whose loss scale and clean-step count must be restored too: a NaN at step 4
  # halves the scale (65536 -> 32768) before the stop at 10, so a resume that started afresh
  # from the initial scale would log another one.
  sizes="2 1"
  [[ $(ranks 2) == 2 ]] || sizes=1  # on one GPU: W=1 only
  for np in $sizes; do
    p=(--set precision.backend=$([[ $np == 1 ]] && echo fp16 || echo fp32))
    if [[ $np == 1 ]]; then export COATNET_FAULT_NAN_STEPS=4-4; else unset COATNET_FAULT_NAN_STEPS; fi
    mpi $np "$coatnet" train "${common[@]}" "${p[@]}" --set train.max_steps=20 --set train.name=s$np >/dev/null
    mpi $np "$coatnet" train "${common[@]}" "${p[@]}" --set train.max_steps=10 --set train.name=r$np >/dev/null
    mpi $np "$coatnet" train "${common[@]}" "${p[@]}" --set train.max_steps=20 --set train.name=r$np \
      --resume auto >"$work/r$np.log"
    grep -q "\[resume\] .*step-00000010: step 10" "$work/r$np.log" ||
      { cat "$work/r$np.log"; fail "W=$np did not resume from step 10"; }
    same_steps s$np r$np 10
    if [[ $np == 1 ]]; then
      "$py" - "$work/runs/s1/metrics.jsonl" <<'PY' || fail "fp16: the scale did not back off at the NaN step"
import json, sys
r = {x["step"]: x for x in map(json.loads, open(sys.argv[1])) if x["type"] == "train"}
assert r[4]["precision_scale"] == 65536 and r[5]["precision_scale"] == 32768, r[5]
assert r[10]["precision_scale"] == 32768 and r[10]["skipped_steps"] == 1, r[10]
PY
      unset COATNET_FAULT_NAN_STEPS
    fi
    [[ $(shard_sums "$(ckroot s$np)/step-00000020") == $(shard_sums "$(ckroot r$np)/step-00000020") ]] ||
      fail "W=$np: the step-20 checkpoints of the straight and the resumed run differ"
    cmp "$work/runs/s$np/final.safetensors" "$work/runs/r$np/final.safetensors" ||
      fail "W=$np: final weights differ"
    echo "W=$np: resumed run bit-identical to the straight run (weights, AdamW, EMA, data, loss)"
  done
  # A resume with another learning rate goes on, and names what changed in the recipe.
  "$coatnet" train "${common[@]}" --set precision.backend=fp16 --set train.max_steps=12 \
    --set train.name=r1 --set optim.lr=5e-4 --resume auto >"$work/lr.log"
  grep -q "recipe changes: optim.lr 0.001 -> 0.0005" "$work/lr.log" ||
    { cat "$work/lr.log"; fail "a resume with another optim.lr did not report it"; }
  echo "PASS: resume"
  ;;
reshard)
  # Save at W=2, resume at W=1 and W=3 with the same global batch (24), with stochastic depth
  # (0.2), dropout, Mixup and CutMix on: the same data stream, and every step's loss within
  # 1e-5 of the uninterrupted W=2 run — each sample got the same drop-path and dropout masks
  # and the same Mixup partner, λ and box at every world size (keyed by its place in the global
  # batch and the step, not by rank). Weights are not compared: see train_equivalence.
  b=(--set data.batch_size=24 --set dist.sync_bn=true --set model.drop_rate=0.2
     --set aug.mixup=0.8 --set aug.cutmix=1.0)
  mpi 2 "$coatnet" train "${common[@]}" "${b[@]}" --set train.max_steps=20 --set train.name=w2 >/dev/null
  for np in 1 3; do
    mkdir -p "$work/runs/w${np}r/checkpoints"
    cp -r "$(ckroot w2)/step-00000010" "$work/runs/w${np}r/checkpoints/"
    mpi $np "$coatnet" train "${common[@]}" "${b[@]}" --set train.max_steps=20 \
      --set train.name=w${np}r --resume auto >"$work/w$np.log"
    grep -q "saved at world size 2, now $np" "$work/w$np.log" ||
      { cat "$work/w$np.log"; fail "no resume at W=$np"; }
    same_steps w2 w${np}r 10 1e-5
  done
  # A different global batch is refused with the reason.
  expect_fail "$work/batch.log" "$coatnet" train "${common[@]}" --set data.batch_size=32 \
    --set train.name=w1r --resume "$(ckroot w2)/step-00000010"
  grep -q "resuming needs the same global batch" "$work/batch.log" || { cat "$work/batch.log"; fail "no batch message"; }
  echo "PASS: reshard"
  ;;
kill)
  # Rank 1 is SIGKILLed half-way through writing its shard of step 10: the job dies, step 10
  # has no manifest; the next start reports it, resumes from step 5, and still ends up
  # bit-identical to a run that was never interrupted.
  set +e
  COATNET_FAULT_KILL_SAVE_RANK=1 COATNET_FAULT_KILL_SAVE_STEP=10 timeout 120 \
    mpirun --oversubscribe -np 2 -x COATNET_FAULT_KILL_SAVE_RANK -x COATNET_FAULT_KILL_SAVE_STEP \
    "$coatnet" train "${common[@]}" --set train.max_steps=20 --set train.name=k \
    --set checkpoint.async=false >"$work/k1.log" 2>&1
  rc=$?
  set -e
  [[ $rc != 0 && $rc != 124 ]] || { cat "$work/k1.log"; fail "the killed job did not fail (rc $rc)"; }
  grep -q "fault injection: killed while writing" "$work/k1.log" || { cat "$work/k1.log"; fail "no kill"; }
  [[ -d $(ckroot k)/step-00000010 && ! -f $(ckroot k)/step-00000010/manifest.yaml ]] ||
    fail "expected a partial step-00000010 without a manifest"
  [[ $(cat "$(ckroot k)/latest") == step-00000005 ]] || fail "latest moved past the last commit"
  "$coatnet" ckpt list "$(ckroot k)" | grep -q "step-00000010 *INCOMPLETE" || fail "ckpt list: partial not shown"
  mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=20 --set train.name=k --resume auto \
    >"$work/k2.log"
  grep -q "skipping .*step-00000010: .*manifest.yaml: missing" "$work/k2.log" ||
    { cat "$work/k2.log"; fail "the partial checkpoint was not reported"; }
  grep -q "\[resume\] .*step-00000005: step 5" "$work/k2.log" || fail "did not resume from step 5"
  mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=20 --set train.name=ref >/dev/null
  cmp "$work/runs/k/final.safetensors" "$work/runs/ref/final.safetensors" ||
    fail "the run resumed after the kill differs from an uninterrupted one"
  echo "PASS: kill"
  ;;
corrupt)
  # Each damage to the newest checkpoint is detected, named, and the previous one is used.
  mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=10 --set train.name=c >/dev/null
  root=$(ckroot c)
  new=$root/step-00000010
  cp -r "$new" "$work/pristine"
  restore() { rm -rf "$new"; cp -r "$work/pristine" "$new"; }
  check_case() {  # check_case NAME EXPECTED-MESSAGE
    expect_fail "$work/verify_$1.log" "$coatnet" ckpt verify "$new"
    grep -q "$2" "$work/verify_$1.log" || { cat "$work/verify_$1.log"; fail "$1: verify did not say '$2'"; }
    mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=10 --set train.name=c \
      --set checkpoint.enabled=false --resume auto >"$work/train_$1.log" 2>&1 ||
      { cat "$work/train_$1.log"; fail "$1: resume failed"; }
    grep -q "skipping .*step-00000010: .*$2" "$work/train_$1.log" ||
      { cat "$work/train_$1.log"; fail "$1: the damage was not reported at resume"; }
    grep -q "\[resume\] .*step-00000005: step 5" "$work/train_$1.log" ||
      fail "$1: the previous checkpoint was not used"
    echo "$1: detected ($2), previous checkpoint used"
    restore
  }
  shard=$new/shard-00001-of-00002.h5
  "$py" -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(-100, 2); b=f.read(1); f.seek(-100, 2); f.write(bytes([b[0]^1]))" "$shard"
  check_case flipped_byte "XXH3 .* differs from the manifest's"
  truncate -s -1000 "$shard"
  check_case truncated "bytes, the manifest says"
  rm "$shard"
  check_case missing_shard "shard-00001-of-00002.h5: missing"
  # The first checksum's first digit changed to another (the old sed left an 'f' followed by
  # another digit as it was, and the case then failed for lack of damage).
  "$py" - "$new/manifest.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"^    xxh3: (.)", text, re.M)
digit = "0" if m.group(1) != "0" else "1"
open(sys.argv[1], "w").write(text[:m.start(1)] + digit + text[m.end(1):])
PY
  check_case bad_checksum "differs from the manifest's"
  sed -i 's|file: shard-00000-of-00002.h5|file: ../../../escape.h5|' "$new/manifest.yaml"
  check_case path_escape "is not a plain file name inside the checkpoint directory"
  sed -i 's/\[exp_avg, 0, /[exp_avg, 1, /' "$new/manifest.yaml"
  check_case range_gap "no shard holds elements from 0"
  sed -i 's/\[params, 0, [0-9]*\]/[params, 0, 999999999]/' "$new/manifest.yaml"
  check_case range_past_end "is outside tensor 'params'"
  # A named, damaged checkpoint is an error, not a silent fallback.
  rm "$shard"
  expect_fail "$work/named.log" "$coatnet" train "${common[@]}" --set train.name=c --resume "$new"
  grep -q "missing" "$work/named.log" || { cat "$work/named.log"; fail "no error for a named bad checkpoint"; }
  echo "PASS: corrupt"
  ;;
diskfull)
  # Checkpoints on a small tmpfs that holds one checkpoint but not two: the second save fails
  # with a clear error, the first stays intact, and the run stops (on_error=stop) or goes on
  # (on_error=continue).
  mkdir -p "$work/full"
  if ! mount -t tmpfs -o size=2500k tmpfs "$work/full" 2>"$work/mount.log"; then
    echo "SKIP: cannot mount a tmpfs here ($(cat "$work/mount.log")); needs root with CAP_SYS_ADMIN"
    exit 77
  fi
  d=(--set "checkpoint.dir=$work/full/ck" --set checkpoint.every_steps=0 --set checkpoint.keep_last=5)
  expect_fail "$work/stop.log" mpi 2 "$coatnet" train "${common[@]}" "${d[@]}" --set train.name=f
  grep -q "checkpoint save of step 32 failed: .*\(not enough space\|No space left\).*the previous checkpoint is intact" \
    "$work/stop.log" || { cat "$work/stop.log"; fail "no disk-full message"; }
  grep -m1 "checkpoint save of step 32 failed" "$work/stop.log"
  "$coatnet" ckpt verify "$work/full/ck" || fail "the previous checkpoint is not intact"
  [[ $(cat "$work/full/ck/latest") == step-00000016 ]] || fail "latest is not step 16"
  rm -rf "$work/full/ck"
  mpi 2 "$coatnet" train "${common[@]}" "${d[@]}" --set train.name=g \
    --set checkpoint.on_error=continue >"$work/cont.log" 2>&1 || { cat "$work/cont.log"; fail "on_error=continue stopped"; }
  grep -q "warning: checkpoint save of step 32 failed" "$work/cont.log" || { cat "$work/cont.log"; fail "no warning"; }
  grep -q "\[summary\] 32 steps" "$work/cont.log" || fail "the run did not finish"
  "$coatnet" ckpt verify "$work/full/ck" || fail "the checkpoint kept is not intact"
  # A real ENOSPC halfway through a shard: the space check passes on a roomy tmpfs, then the
  # disk fills up (COATNET_FAULT_FILL_DISK, as another job on a shared disk would) and the
  # kernel refuses the write. The save fails naming it, its partial files are gone, the space
  # comes back, and the previous checkpoint is intact.
  mkdir -p "$work/spacious"
  mount -t tmpfs -o size=40m tmpfs "$work/spacious"
  s=(--set "checkpoint.dir=$work/spacious/ck" --set checkpoint.every_steps=0)
  expect_fail "$work/enospc.log" env COATNET_FAULT_FILL_DISK=step-00000032 \
    mpirun --oversubscribe -np 2 -x COATNET_FAULT_FILL_DISK "$coatnet" train "${common[@]}" "${s[@]}" \
    --set train.name=e
  grep -q "checkpoint save of step 32 failed: .*writing dataset .*(No space left on device).*the previous checkpoint is intact" \
    "$work/enospc.log" || { cat "$work/enospc.log"; fail "no ENOSPC message from the write"; }
  grep -q "not enough space" "$work/enospc.log" && fail "the space check, not the write, failed"
  grep -m1 "checkpoint save of step 32 failed" "$work/enospc.log"
  [[ ! -e $work/spacious/ck/step-00000032 ]] || fail "the failed save left step-00000032 behind"
  [[ $(cat "$work/spacious/ck/latest") == step-00000016 ]] || fail "latest is not step 16"
  "$coatnet" ckpt verify "$work/spacious/ck" || fail "the previous checkpoint is not intact"
  used=$(df --output=used -k "$work/spacious" | tail -1)
  ((used < 20000)) || fail "the disk stayed full after the failed save (${used} KiB used)"
  echo "PASS: diskfull"
  ;;
signal)
  # SIGUSR1 to mpirun (as Slurm's --signal would send) mid-run: the ranks agree at a step
  # boundary, save, and exit 75; --resume auto continues, and the result equals a run that was
  # never stopped.
  mpi 2 "$coatnet" train "${common[@]}" --set train.name=ref >/dev/null
  mpirun --oversubscribe -np 2 "$coatnet" train "${common[@]}" --set train.name=sig \
    --set train.log_every_steps=1 >"$work/sig.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "step 8/32" "$work/sig.log" && break; sleep 0.1; done
  kill -USR1 $pid
  set +e
  wait $pid
  rc=$?
  set -e
  [[ $rc == 75 ]] || { cat "$work/sig.log"; fail "expected exit 75 after the stop signal, got $rc"; }
  grep -q "stop signal: stopping after step" "$work/sig.log" || fail "no stop message"
  stopped=$(cat "$(ckroot sig)/latest")
  echo "stopped at $stopped (exit 75)"
  mpi 2 "$coatnet" train "${common[@]}" --set train.name=sig --resume auto >"$work/sig2.log"
  cmp "$work/runs/ref/final.safetensors" "$work/runs/sig/final.safetensors" ||
    fail "the stopped and resumed run differs from the uninterrupted one"
  echo "PASS: signal"
  ;;
cli)
  mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=20 --set train.name=x \
    --set checkpoint.keep_last=2 --set checkpoint.keep_every=10 >/dev/null
  # Saved at 5, 10, 15, 16 (epoch end), 20. Retention keeps the newest 2 (16, 20) and every
  # 10th (10, 20): 5 and 15 are deleted.
  got=$(cd "$(ckroot x)" && echo step-*)
  [[ $got == "step-00000010 step-00000016 step-00000020" ]] || fail "retention kept: $got"
  "$coatnet" ckpt list "$(ckroot x)" | grep -q "step-00000020 *committed .*<- latest" || fail "ckpt list"
  "$coatnet" ckpt verify "$(ckroot x)" | grep -q "3 checkpoint(s), 0 with problems" || fail "ckpt verify"
  "$coatnet" ckpt info "$(ckroot x)" --json | "$py" -c "
import json, sys; i = json.load(sys.stdin)
assert i['step'] == 20 and i['world_size'] == 2 and i['backend'] == 'sharded', i
assert len(i['shards']) == 2, i"
  # Export: equal to the weights the run ended with; the EMA differs from them.
  "$coatnet" export "$(ckroot x)" --out "$work/x.safetensors" >/dev/null
  cmp "$work/x.safetensors" "$work/runs/x/final.safetensors" || fail "export differs from final.safetensors"
  "$coatnet" export "$(ckroot x)/step-00000020" --ema --out "$work/x_ema.safetensors" >/dev/null
  cmp -s "$work/x_ema.safetensors" "$work/runs/x/final_ema.safetensors" || fail "EMA export differs from final_ema"
  # The consolidated backend: one file from rank 0, loadable at another world size.
  mpi 2 "$coatnet" train "${common[@]}" --set train.max_steps=10 --set train.name=y \
    --set checkpoint.backend=consolidated >/dev/null
  [[ $(ls "$(ckroot y)/step-00000010"/*.h5 | wc -l) == 1 ]] || fail "consolidated wrote more than one file"
  "$coatnet" train "${common[@]}" --set train.max_steps=12 --set train.name=y --resume auto \
    >"$work/y.log"
  grep -q "saved at world size 2, now 1" "$work/y.log" ||
    { cat "$work/y.log"; fail "consolidated checkpoint not resumed at W=1"; }
  # --init-from: fine-tuning starts from exported weights (and names what it resized).
  "$coatnet" train "${common[@]}" --set train.max_steps=1 --set train.name=ft \
    --init-from "$work/x.safetensors" --set model.image_size=64 >"$work/ft.log"
  grep -q "resized .* bias tables to 64 px" "$work/ft.log" ||
    { cat "$work/ft.log"; fail "--init-from did not load and resize"; }
  # Resuming into another model, or with no fixed run directory: refused, naming why.
  expect_fail "$work/model.log" "$coatnet" train "${common[@]}" --set train.name=x \
    --set "model.widths=[16,32,32,32]" --resume auto
  grep -q "where the model has .*the checkpoint was saved from another model" "$work/model.log" ||
    { cat "$work/model.log"; fail "no message about the other model"; }
  expect_fail "$work/noname.log" "$coatnet" train "${common[@]}" --resume auto
  grep -q "needs a fixed run directory to find the checkpoints in: set train.name" "$work/noname.log" ||
    { cat "$work/noname.log"; fail "no message about train.name"; }
  echo "PASS: cli"
  ;;
zero)
  # ZeRO-1 (optim.zero 1) against optim.zero 0: the same training, and checkpoints that move
  # between the two and across world sizes. Clipping off: the global norm is then only read for
  # the non-finite check, so the one difference left is the order of the gradient sums.
  [[ $(ranks 3) == 3 ]] || { echo "SKIP: needs 3 ranks (COATNET_TEST_MAX_NP)"; exit 77; }
  # SyncBN on, so that a resume at another world size sees the same batch statistics.
  z=(--set optim.clip_grad=0 --set train.max_steps=10 --set data.batch_size=24 --set dist.sync_bn=true)
  for np in 2 3; do
    for zero in 0 1; do
      mpi $np "$coatnet" train "${common[@]}" "${z[@]}" --set optim.zero=$zero \
        --set train.name=z${zero}w$np >"$work/z${zero}w$np.log"
    done
    grep -q "optimizer state sharded over $np ranks (ZeRO-1)" "$work/z1w$np.log" ||
      { cat "$work/z1w$np.log"; fail "W=$np: optim.zero=1 did not shard"; }
    ! grep -q "ZeRO-1" "$work/z0w$np.log" || fail "W=$np: optim.zero=0 sharded"
    # The parameter all-gather's wait is reported under ZeRO-1 only.
    grep -q '"param_gather_wait_s"' "$work/runs/z1w$np/metrics.jsonl" || fail "no param_gather_wait_s"
    ! grep -q '"param_gather_wait_s"' "$work/runs/z0w$np/metrics.jsonl" || fail "zero 0 reports a gather"
    # Rank r's shard holds only its range of the moments: 1/W of them each.
    "$py" - "$(ckroot z1w$np)/step-00000010/manifest.yaml" "$np" <<'PY' || fail "W=$np: moments not 1/W per shard"
import re, sys
text, w = open(sys.argv[1]).read(), int(sys.argv[2])
total = int(re.search(r"name: exp_avg, dtype: float32, numel: (\d+)", text).group(1))
segs = [(int(b), int(e)) for b, e in re.findall(r"\[exp_avg, (\d+), (\d+)\]", text)]
assert len(segs) == w and all(e - b == total // w for b, e in segs), (total, segs)
PY
    read -r d _ < <(compare "$work/runs/z0w$np/final.safetensors" "$work/runs/z1w$np/final.safetensors")
    read -r de _ < <(compare "$work/runs/z0w$np/final_ema.safetensors" "$work/runs/z1w$np/final_ema.safetensors")
    echo "W=$np: optim.zero 1 vs 0 after 10 steps: max |dw| $d, EMA $de"
    if [[ $np == 2 ]]; then  # one addition per sum, in any order: bit-identical
      [[ $d == 0.000e+00 && $de == 0.000e+00 ]] || fail "W=2: zero 1 and zero 0 differ ($d, EMA $de)"
    fi
    same_steps z0w$np z1w$np 0 1e-5
  done
  # A checkpoint of either mode resumes in the other, exactly (W=2: the modes are bit-identical).
  for from in 0 1; do
    to=$((1 - from))
    mkdir -p "$(ckroot x$from)"
    cp -r "$(ckroot z${from}w2)/step-00000005" "$(ckroot x$from)/"
    mpi 2 "$coatnet" train "${common[@]}" "${z[@]}" --set optim.zero=$to --set train.name=x$from \
      --resume auto >"$work/x$from.log"
    grep -q "\[resume\] .*step-00000005: step 5" "$work/x$from.log" || { cat "$work/x$from.log"; fail "no resume"; }
    for f in final final_ema; do
      cmp "$work/runs/z${from}w2/$f.safetensors" "$work/runs/x$from/$f.safetensors" ||
        fail "zero $from -> $to: $f differs from the uninterrupted run"
    done
    echo "W=2: a zero $from checkpoint resumed with zero $to is bit-identical (weights, EMA)"
  done
  # Across world sizes too: W=3's sharded state into W=2's ranges.
  mkdir -p "$(ckroot y)"
  cp -r "$(ckroot z1w3)/step-00000005" "$(ckroot y)/"
  mpi 2 "$coatnet" train "${common[@]}" "${z[@]}" --set optim.zero=1 --set train.name=y \
    --resume auto >"$work/y.log"
  grep -q "saved at world size 3, now 2" "$work/y.log" || { cat "$work/y.log"; fail "no resume at W=2"; }
  same_steps z1w3 y 5 1e-5
  # Mixed precision and accumulation: fp16 (a NaN step skipped, its scale backed off) with
  # 2 micro-steps, and bf16, bit-identical between the modes at W=2.
  for p in "fp16 2" "bf16 1"; do
    read -r prec acc <<<"$p"
    for zero in 0 1; do
      COATNET_FAULT_NAN_STEPS=3-3 mpi 2 "$coatnet" train "${common[@]}" "${z[@]}" \
        --set precision.backend=$prec --set optim.accum_steps=$acc --set optim.zero=$zero \
        --set checkpoint.enabled=false --set train.name=$prec$zero >/dev/null
    done
    cmp "$work/runs/${prec}0/final.safetensors" "$work/runs/${prec}1/final.safetensors" ||
      fail "$prec, accum $acc: zero 1 and zero 0 differ"
    same_steps ${prec}0 ${prec}1 4  # after the NaN step (logged as step 4, its loss null)
  done
  # optim.zero=1 with consolidated checkpoints is refused, naming both keys; auto turns it off.
  expect_fail "$work/cons.log" mpi 2 "$coatnet" train "${common[@]}" "${z[@]}" --set optim.zero=1 \
    --set checkpoint.backend=consolidated --set train.name=c
  grep -q "checkpoint.backend = consolidated" "$work/cons.log" || { cat "$work/cons.log"; fail "no message"; }
  echo "PASS: zero"
  ;;
*) fail "unknown mode $mode" ;;
esac
