#!/usr/bin/env bash
# bench_host on CPU: every rewrite's row has its operator calls and host microseconds beside its
# composite's, and train.bn_fold's folding arithmetic stays one autograd node with its gradient
# written out (model/bn_fold_weights.h): as separate operations it made 431 operator calls a
# forward + backward, 4.4x the composite's 99 (torch 2.12), against 335 (3.4x) now.
# usage: bench_host_test.sh BENCH_HOST PYTHON
set -u
bench=$1 py=${2:-python3}
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$bench" --rounds 3 --json 2>&1) || fail "exit $?: $out"
"$py" - <<PY || fail "wrong figures: $out"
import json
rows = {r["rewrite"]: r for r in json.loads("""$out""".splitlines()[-1])["rows"]}
assert list(rows) == ["bn_fold", "se_fold", "pointwise_gemm"], list(rows)
for r in rows.values():
    assert r["ops"] > 0 and r["composite_ops"] > 0 and r["us"] > 0 and r["composite_us"] > 0, r
fold = rows["bn_fold"]
assert fold["ops"] < 4 * fold["composite_ops"], f"bn_fold: {fold['ops']} operator calls, {fold['composite_ops']} for the composite"
print({k: (r["ops"], r["composite_ops"]) for k, r in rows.items()})
PY
"$bench" --help | grep -q -- "--rounds" || fail "--help does not list --rounds"
echo "PASS: bench_host"
