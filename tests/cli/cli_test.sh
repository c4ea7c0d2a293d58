#!/usr/bin/env bash
# The `coatnet` CLI as a user meets it: exit codes (0 ok, 1 error, 2 usage), --help on every
# subcommand, --json output, and clear messages for bad configs and bad weight files.
# usage: cli_test.sh BUILD/bin/coatnet SOURCE_DIR
set -u
coatnet=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect CODE PATTERN -- CMD...: CMD exits with CODE and its stdout+stderr match PATTERN.
expect() {
  local code=$1 pattern=$2
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc -eq $code ]] && grep -qE -- "$pattern" <<<"$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $* -> exit $rc (want $code), output does not match /$pattern/ or code differs:"
    sed 's/^/    /' <<<"$out" | head -20
  fi
}

# Usage and help
expect 2 "usage: coatnet <command>" -- "$coatnet"
expect 0 "commands:" -- "$coatnet" --help
expect 2 "unknown command 'infoo' \(did you mean 'info'\?\)" -- "$coatnet" infoo
expect 1 "--step-ms is needed: one GPU.s step time" -- "$coatnet" plan --model coatnet_0_224
expect 1 "--link-gbps = .fast.: expected a positive number" -- "$coatnet" plan --model coatnet_0_224 --step-ms 100 --link-gbps fast
expect 0 '"gpus":1024,"nodes":128' -- "$coatnet" plan --model coatnet_0_224 --step-ms 100 --json
expect 0 "efficiency" -- "$coatnet" plan --model coatnet_0_224 --step-ms 100 --gpus 8,64
for cmd in info forward train pack "pack idx" data "data inspect" "data verify" "data bench" plan; do
  expect 0 "usage: coatnet $cmd" -- "$coatnet" $cmd --help
done
expect 2 "unknown command 'inspekt' \(did you mean 'inspect'\?\)" -- "$coatnet" data inspekt x
expect 2 "missing LABELS" -- "$coatnet" pack idx images-only
expect 1 "no files match '$tmp/none-\*.h5'" -- "$coatnet" data inspect "$tmp/none-*.h5"
expect 2 "unknown option '--modle' \(did you mean '--model'\?\)" -- "$coatnet" info --modle x
expect 1 "model.image_size = big .*expected an integer" -- "$coatnet" info --model coatnet_0_224 --image-size big
expect 2 "--weights W.safetensors is required" -- "$coatnet" forward --model coatnet_0_224

# info
expect 0 '"params":25036820' -- "$coatnet" info --model coatnet_0_224 --json
expect 0 "params 15,141,244" -- "$coatnet" info --model coatnet_nano_rw_224
expect 0 '"height":12' -- "$coatnet" info --model coatnet_0_224 --image-size 384 --json
expect 0 '"layout":"CTTT"' -- "$coatnet" info --model custom --set model.layout=CTTT --image-size 64 --json
expect 1 "unknown model 'coatnet_9_224' \(did you mean" -- "$coatnet" info --model coatnet_9_224
expect 1 "image_size 100 must be a multiple of 32" -- "$coatnet" info --model coatnet_0_224 --image-size 100
expect 1 "layout 'CCXT' has 'X'" -- "$coatnet" info --model custom --set model.layout=CCXT
# info --batch: the memory plan (test_memory_plan.cpp checks its figures)
tiny=(--model custom --set model.depths=[1,1,1,1] --set model.widths=[16,32,32,64] --image-size 32)
expect 0 '"memory":\{"world_size":4,"batch":10,"per_rank_batch":3,"precision":"fp32","zero":1,"params_bytes":' -- "$coatnet" info "${tiny[@]}" --batch 10 --world-size 4 --precision fp32 --json
expect 0 "memory per rank: world size 2, batch 8 \(4 per rank\), bf16, ZeRO-1" -- "$coatnet" info "${tiny[@]}" --batch 8 --world-size 2
expect 0 '"precision":"fp32","zero":0,' -- "$coatnet" info "${tiny[@]}" --batch 8 --world-size 2 --zero 0 --precision fp32 --json
expect 1 "--zero must be 0, 1 or auto, got '2'" -- "$coatnet" info "${tiny[@]}" --batch 8 --zero 2
expect 1 "--batch must be a positive integer, got '0'" -- "$coatnet" info "${tiny[@]}" --batch 0
expect 1 "--world-size must be a positive integer, got 'two'" -- "$coatnet" info "${tiny[@]}" --batch 8 --world-size two
expect 1 "--precision must be fp32, bf16 or fp16, got 'fp8'" -- "$coatnet" info "${tiny[@]}" --batch 8 --precision fp8

# train --print-config and config errors
expect 0 "lr: 0.001 +# peak learning rate" -- "$coatnet" train --config "$src/configs/coatnet_0_imagenet1k.yaml" --print-config
expect 0 "lr: 0.0005" -- "$coatnet" train --config "$src/configs/coatnet_0_imagenet1k.yaml" --set optim.lr=5e-4 --print-config
printf 'optim:\n  lr: 1e-3\n  weight_decy: 0.05\n' >"$tmp/typo.yaml"
expect 1 "unknown key 'optim.weight_decy' \($tmp/typo.yaml:3\) \(did you mean 'optim.weight_decay'\?\)" -- "$coatnet" train --config "$tmp/typo.yaml" --print-config
printf 'data:\n  batch_size: lots\n' >"$tmp/type.yaml"
expect 1 "data.batch_size = lots \($tmp/type.yaml:2\): expected an integer" -- "$coatnet" train --config "$tmp/type.yaml" --print-config
printf 'model:\n  drop_path: 1.5\n' >"$tmp/range.yaml"
expect 1 "model.drop_path = 1.5 .*expected a number in \[0, 0.99\]" -- "$coatnet" train --config "$tmp/range.yaml" --print-config
expect 1 "unknown key 'optim.lrr' \(--set\) \(did you mean 'optim.lr'\?\)" -- "$coatnet" train --set optim.lrr=1 --print-config
expect 1 "cannot read $tmp/none.yaml" -- "$coatnet" train --config "$tmp/none.yaml" --print-config

# forward with malformed files (no Python needed to make these)
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"w":' >"$tmp/truncated.safetensors"
expect 1 "truncated.safetensors: header length 64 exceeds the file" -- "$coatnet" forward --model coatnet_nano_rw_224 --weights "$tmp/truncated.safetensors" --input "$tmp/x" --output "$tmp/y"
: >"$tmp/empty.safetensors"
expect 1 "empty.safetensors: 0 bytes is too short" -- "$coatnet" forward --model coatnet_nano_rw_224 --weights "$tmp/empty.safetensors" --input "$tmp/x" --output "$tmp/y"
expect 1 "nothere.safetensors: cannot open" -- "$coatnet" forward --model coatnet_nano_rw_224 --weights "$tmp/nothere.safetensors" --input "$tmp/x" --output "$tmp/y"

echo "cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
