#!/usr/bin/env bash
# `coatnet plugins` and choosing plugins by name: the shipped precision plugins are found; an
# unknown name, a plugin built for another ABI and a library that is not a plugin are each
# refused with a message naming them.
# usage: plugins_test.sh COATNET BAD_PLUGIN_DIR SOURCE_DIR
set -euo pipefail
coatnet=$1 bad=$2 src=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$coatnet" plugins)
echo "$out"
for n in fp32 bf16 fp16; do
  echo "$out" | grep -qE "^precision +$n " || fail "precision plugin $n not listed"
done
for n in sharded consolidated; do
  echo "$out" | grep -qE "^checkpoint +$n " || fail "checkpoint plugin $n not listed"
done
json=$("$coatnet" plugins --json)
echo "$json" | python3 -c "
import json, sys
d = json.load(sys.stdin)
names = sorted(p['name'] for p in d['plugins'] if p['kind'] == 'precision')
assert names == ['bf16', 'fp16', 'fp32'], names
assert all(p['abi'] == d['abi'] for p in d['plugins'])
" || fail "plugins --json"

set +e
msg=$("$coatnet" train --config "$src/tests/train/tiny.yaml" --set precision.backend=fp8 2>&1)
rc=$?
set -e
[[ $rc == 1 ]] || fail "unknown precision plugin: exit $rc, expected 1"
echo "$msg" | grep -q "precision.backend = 'fp8' is not an available precision plugin; available: " ||
  { echo "$msg"; fail "no message naming the unknown plugin and the available ones"; }

set +e
msg=$("$coatnet" train --config "$src/tests/train/tiny.yaml" --set checkpoint.backend=zarr 2>&1)
rc=$?
set -e
[[ $rc == 1 ]] || fail "unknown checkpoint plugin: exit $rc, expected 1"
echo "$msg" | grep -q "checkpoint.backend = 'zarr' is not an available checkpoint plugin; available: .*sharded" ||
  { echo "$msg"; fail "no message naming the unknown checkpoint plugin and the available ones"; }

out=$(COATNET_PLUGIN_PATH="$bad" "$coatnet" plugins)
echo "$out" | grep -q "was built for plugin ABI 999, this coatnet needs ABI" || { echo "$out"; fail "ABI mismatch not reported"; }
echo "$out" | grep -q "is not a coatnet plugin" || { echo "$out"; fail "non-plugin library not reported"; }
set +e
msg=$(COATNET_PLUGIN_PATH="$bad" "$coatnet" train --config "$src/tests/train/tiny.yaml" \
      --set precision.backend=broken 2>&1)
rc=$?
set -e
[[ $rc == 1 ]] || fail "ABI-mismatched plugin chosen: exit $rc, expected 1"
echo "$msg" | grep -q "not used: .*ABI 999" || { echo "$msg"; fail "the refusal does not say why"; }
echo "PASS: plugins"
