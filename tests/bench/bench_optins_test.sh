#!/usr/bin/env bash
# bench_optins on CPU (float32) at coatnet_0's widths, 64 px: it times every variant, puts the
# default first, and each variant's loss on the same batch and weights is the default's within
# float32 rounding (the opt-ins change rounding only); a bad variant or device is refused by
# name.
# usage: bench_optins_test.sh BENCH_OPTINS PYTHON
set -u
bench=$1 py=${2:-python3}
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$bench" --device cpu --model coatnet_0_224 --image-size 64 --batch 2 --warmup 0 \
  --steps 1 --rounds 1 --variants bn_fold,se_fold,pointwise_gemm,all --json 2>&1) ||
  fail "exit $?: $out"
"$py" - <<PY || fail "wrong figures: $out"
import json
rows = [json.loads(l) for l in """$out""".splitlines() if l.startswith("{")]
summary = rows[-1]
names = [r["variant"] for r in summary["optins"]]
assert names == ["default", "bn_fold", "se_fold", "pointwise_gemm", "all"], names
for r in summary["optins"]:
    assert r["ms_per_step"] > 0 and r["images_per_s"] > 0, r
    assert abs(r["loss_vs_default"]) < 1e-5, r
assert summary["optins"][0]["vs_default"] == 1.0
print("losses:", [round(r["loss"], 6) for r in summary["optins"]])
PY
msg=$("$bench" --device cpu --variants default,bn_fuse 2>&1)
rc=$?
[[ $rc != 0 ]] && grep -q "unknown variant 'bn_fuse' (did you mean 'bn_fold'?)" <<<"$msg" ||
  fail "a bad variant: exit $rc: $msg"
msg=$("$bench" --device tpu 2>&1)
rc=$?
[[ $rc != 0 ]] && grep -q "\-\-device: 'tpu' is neither cpu nor cuda" <<<"$msg" ||
  fail "a bad device: exit $rc: $msg"
"$bench" --help | grep -q -- "--variants" || fail "--help does not list --variants"
echo "PASS: bench_optins on CPU"
