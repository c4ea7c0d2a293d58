#!/usr/bin/env bash
# launch/gpu-check-table.py, which makes gpu-check's table and JSON on the borrowed GPU machine,
# on a results.tsv made here: each opt-in's training run against ours, the goals, a peer that
# failed (n/a, not a crash), the kernels' rows, and the exit status (1 when a step failed).
# usage: gpu_check_table_test.sh PYTHON
set -u
py=${1:-python3}
root=$(cd "$(dirname "$0")/../.." && pwd)
table="$root/launch/gpu-check-table.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/gpu-check-table.XXXXXX)
trap 'rm -rf "$work"' EXIT
row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$work/results.tsv"; }
run() {  # IMAGES_PER_S LOSS [TOP_KERNELS_JSON]
  local ips=$1 loss=$2 profile=""
  [[ -n ${3:-} ]] && profile=', "profile": {"wall_ms_per_step": 80, "busy_ms_per_step": 78, '\
'"busy_share": 0.97, "kernels_per_step": 1300, "top": '"$3"'}'
  printf '{"images_per_s": %s, "step_ms": %s, "data_share": 0.0, "loss_steps_41_50": %s, "peak_memory_gib": 17.5, "device_memory_gib": 79.2%s}' \
    "$ips" "$(awk "BEGIN { print 128000 / $ips }")" "$loss" "$profile"
}
row build "pass (prebuilt)" 0 "torch 2.11.0+cu130"
row "test precision_gpu" pass 30 "PASS: precision;"
row "bench matmul_bf16" ok 4 '{"device": "NVIDIA H100 80GB HBM3", "tflops": 750.0}'
row "bench ours_coatnet_0_bf16" ok 40 "$(run 1600 6.0623 '[["bn_stats", 5.5, 0.07], ["gemm", 4.0, 0.05], ["mul", 3.0, 0.04]]')"
row "bench ours_coatnet_0_bf16_composites" ok 30 "$(run 1700 6.0625 '[["bn_stats", 5.4, 0.07], ["gemm", 4.5, 0.06], ["bmm", 1.25, 0.02]]')"
row "bench ours_coatnet_0_bf16_eager" ok 30 "$(run 2000 6.0630)"
row "bench ours_coatnet_0_bf16_batch_prep" FAIL 12 "exit 1: CUDA error"
row "bench timm_eager_bf16" ok 40 '{"images_per_s": 1500.0}'
row "bench timm_compile_bf16" "FAIL (peer)" 100 "exit 124: "
row "bench kernels" ok 20 '{"kernels":[{"kernel":"bn_gelu","shape":[128,384,56,56],"dtype":"bf16","kernel_ms":0.5,"composite_ms":1.0,"speedup":2.0,"kernel_gb_per_s":1600.0},{"kernel":"se_fold","shape":[128,384,96,56],"kernel_ms":1.0,"composite_ms":1.5,"speedup":1.5,"kernel_tflops":50.0}]}'
row "bench optin_steps" ok 60 '{"model":"coatnet_0_224","optins":[{"variant":"default","ms_per_step":70.0,"images_per_s":1828.6,"vs_default":1.0,"loss":6.9,"loss_vs_default":0.0},{"variant":"bn_fold","ms_per_step":64.0,"images_per_s":2000.0,"vs_default":1.09375,"loss":6.9001,"loss_vs_default":1.4e-05}]}'
row "bench kernel_counters" ok 50 '{"launches": 3, "kernels": [{"kernel": "bn_gelu_elemt_kernel<__nv_bfloat16, 8>", "grid": "(1, 1054, 1)", "block": "(128, 1, 1)", "launches": 2, "ms_each": 0.125, "ms_total": 0.25, "dram_pct": 31.4, "sm_pct": 70.6, "memory_pct": null, "achieved_occupancy_pct": 24.2, "theoretical_occupancy_pct": 25.0, "registers": 72.0, "shared_kib": 57.5}, {"kernel": "bn_gelu_forward_channels_kernel", "grid": "(3, 1, 1)", "block": "(128, 1, 1)", "launches": 1, "ms_each": null, "ms_total": null, "dram_pct": null, "sm_pct": null, "memory_pct": null, "achieved_occupancy_pct": null, "theoretical_occupancy_pct": null, "registers": null, "shared_kib": null}]}'
row "bench attention_composite" ok 20 '{"device":"H100","dtype":"bf16","shapes":[{"heads":12,"n":196,"dim_head":32,"batch":128,"composite_ms":1.5,"composite_efficient_ms":1.55,"composite_cudnn_ms":null,"composite_cudnn_error":"No available kernel. Aborting execution.","composite_strided_bias_ms":3.2,"explicit_ms":1.7,"no_bias_flash_ms":0.47}]}'
row "bench memory_plan" ok 15 '{"model":"coatnet_0_224","memory":{"batch":128,"precision":"bf16","total_bytes":17254719000}}'
info='{"gmacs": 4.55}'

"$py" "$table" "$work/results.tsv" "$work" "NVIDIA H100 80GB HBM3" 300 "$info" >"$work/stdout" 2>&1
rc=$?
[[ $rc == 1 ]] || fail "a failed step (batch_prep's run): expected exit 1, got $rc: $(tail -5 "$work/stdout")"
cmp -s "$work/stdout" <(cat "$work/gpu-check.txt") || fail "the printed table is not gpu-check.txt"
expect() { grep -qF -- "$1" "$work/gpu-check.txt" || fail "no line with '$1' in: $(cat "$work/gpu-check.txt")"; }
expect "gpu-check on NVIDIA H100 80GB HBM3: 300 s end to end (goal <= 480)"
expect "| ours images/s | 1600.0 | |"
expect "| ours with ATen's composites only images/s | 1700.0 (1.062x ours) | |"
expect "| ours eager (train.cuda_graph=false) images/s | 2000.0 (1.250x ours) | |"
expect "| ours + batch_prep kernel images/s | n/a | |"
expect "| ours with ATen's composites only: mean loss of steps 41-50 | 6.0625 | |"
expect "| ours with ATen's composites only vs ours: mul | -3.00 ms per step | |"
expect "| ours with ATen's composites only vs ours: bmm | +1.25 ms per step | |"
expect "| ours with ATen's composites only vs ours: gemm | +0.50 ms per step | |"
expect "| optin_steps: step with default (interleaved) | 70.00 ms, 1.000x default, loss +0.0e+00 vs default | |"
expect "| optin_steps: step with bn_fold (interleaved) | 64.00 ms, 1.094x default, loss +1.4e-05 vs default | |"
expect "| ours_vs_timm_eager | 1.07 | >= 1.3 |"
expect "| ours_vs_timm_compile | n/a | >= 1.0 |"
expect "| bn_gelu kernel [128, 384, 56, 56] vs ATen composite | 2.00x (0.500 vs 1.000 ms, 1600 GB/s) | > 1 |"
expect "| attention fwd+bwd 12x196x32: composite (SDPA's choice / memory-efficient / cuDNN) / with a strided bias / explicit / flash without bias | 1.500 / 1.550 / n/a / 3.200 / 1.700 / 0.470 ms | No available kernel. Aborting execution. |"
expect "| se_fold kernel [128, 384, 96, 56] vs ATen composite | 1.50x (1.000 vs 1.500 ms, 50 TFLOP/s) | > 1 |"
"$py" - "$work/gpu-check.json" <<'PY' || fail "gpu-check.json: wrong figures"
import json, sys
j = json.load(open(sys.argv[1]))
assert abs(j["optin_vs_ours"]["ours_coatnet_0_bf16_composites"] - 1700 / 1600) < 1e-9, j["optin_vs_ours"]
assert "ours_coatnet_0_bf16_batch_prep" not in j["optin_vs_ours"], "a failed run has no ratio"
assert abs(j["ours_vs_timm_eager"] - 1600 / 1500) < 1e-9 and j["ours_vs_timm_compile"] is None
assert abs(j["mfu_ours_measured_matmul"] - 1600 * 6 * 4.55e9 / 750e12) < 1e-9
PY
# Without a failed step the exit status is 0.
grep -v "ours_coatnet_0_bf16_batch_prep" "$work/results.tsv" >"$work/ok.tsv"
"$py" "$table" "$work/ok.tsv" "$work" "NVIDIA H100 80GB HBM3" 300 "$info" >/dev/null ||
  fail "no step failed, yet exit $?"
# A kernel's row that threw on the GPU (bench_kernels goes on with the others) is a failure.
sed 's/{"kernel":"se_fold",[^}]*}/{"kernel":"se_fold","error":"CUDA error: an illegal memory access"}/' \
  "$work/ok.tsv" >"$work/err.tsv"
"$py" "$table" "$work/err.tsv" "$work" "NVIDIA H100 80GB HBM3" 300 "$info" >/dev/null &&
  fail "a kernel's row that threw: expected exit 1, got 0"
expect "| se_fold kernel vs ATen composite | FAIL: CUDA error: an illegal memory access | |"
expect "| bn_gelu kernel [128, 384, 56, 56] vs ATen composite | 2.00x"
expect "| ncu: bn_gelu_elemt_kernel<__nv_bfloat16, 8> grid (1, 1054, 1) x2 | 0.125 ms each, DRAM 31%, SM 71%, occupancy 24% of 25%, 72 registers, 57.5 KiB shared | |"
expect "| ncu: bn_gelu_forward_channels_kernel grid (3, 1, 1) x1 | n/a ms each, DRAM n/a, SM n/a, occupancy n/a of n/a, n/a registers, n/a KiB shared | |"
expect "| ours: peak memory, allocated by tensors | 17.5 of 79.2 GiB; coatnet info plans 16.1 GiB (1.09x) | |"
expect "| ours with ATen's composites only: peak memory, allocated by tensors | 17.5 of 79.2 GiB; coatnet info plans 16.1 GiB (1.09x) | |"
# Replayed as a CUDA graph, ours has no operator around its kernels ("?"): the eager run's say
# what launched them.
ops() {  # OP: one kernel launched by OP
  printf '{"steps": 5, "kernels": [{"name": "dgrad2d", "ms_per_step": 1.9, "calls_per_step": 2, "launched_by": [{"op": "%s", "within": null, "dims": null, "strides": [[1, 2]], "types": null, "calls_per_step": 2, "ms_per_step": 1.9}]}]}' "$1"
}
ops "?" >"$work/ops-ours.json"
ops aten::convolution_backward >"$work/ops-ours_eager.json"
"$py" "$table" "$work/ok.tsv" "$work" "NVIDIA H100 80GB HBM3" 300 "$info" >/dev/null
expect "| ours eager kernel dgrad2d: 1.90 ms from aten::convolution_backward in  | strides [[1, 2]] | |"
grep -qF "from ?" "$work/gpu-check.txt" && fail "kernels credited to no operator"
ops aten::mm >"$work/ops-ours.json"
"$py" "$table" "$work/ok.tsv" "$work" "NVIDIA H100 80GB HBM3" 300 "$info" >/dev/null
expect "| ours kernel dgrad2d: 1.90 ms from aten::mm in  | strides [[1, 2]] | |"
echo "PASS: gpu-check's table"
