#!/usr/bin/env bash
# `coatnet pack` under real mpirun: 1 and 3 ranks give byte-identical shards; `coatnet data
# verify` passes them and names a flipped byte and a truncated shard.
# With a Python that has PIL (the .venv's), also `pack imagefolder` under 2 ranks and its report.
# usage: pack_mpi.sh BUILD/bin/coatnet [PYTHON]
set -u
coatnet=$1
py=${2:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
pass=0
fail=0
check() {  # check NAME CONDITION-EXIT-CODE
  if [[ $2 -eq 0 ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}

# 1000 random 28x28 images with labels 0..9; image 500 carries a marker to find in the shard.
python3 - "$tmp" <<'PY'
import gzip, random, struct, sys
d = sys.argv[1]
random.seed(7)
n = 1000
pix = bytearray(random.getrandbits(8) for _ in range(n * 784))
pix[500 * 784:501 * 784] = bytes(range(200)) * 3 + bytes(184)
with gzip.open(f"{d}/img.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(pix))
with open(f"{d}/lab", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(random.randrange(10) for _ in range(n)))
PY

mpirun -np 1 "$coatnet" pack idx "$tmp/img.gz" "$tmp/lab" "$tmp/one/train" --records-per-shard 96 >"$tmp/log1" 2>&1
check "pack with 1 rank" $?
COATNET_STARTED_FILE=$tmp/started mpirun -np 3 -x COATNET_STARTED_FILE "$coatnet" pack idx "$tmp/img.gz" \
  "$tmp/lab" "$tmp/three/train" --records-per-shard 96 >"$tmp/log3" 2>&1
check "pack with 3 ranks" $?
# The Slurm scripts start a job again only when this file is missing (cluster/slurm/common.sh).
[[ $(head -1 "$tmp/started" 2>/dev/null) == "3 ranks on" && $(wc -l <"$tmp/started") == 4 ]]
check "rank 0 wrote COATNET_STARTED_FILE once MPI was up in all 3 ranks" $?
COATNET_STARTED_FILE=$tmp/no-such-dir/started mpirun -np 2 -x COATNET_STARTED_FILE "$coatnet" pack idx \
  "$tmp/img.gz" "$tmp/lab" "$tmp/unwritable/train" --records-per-shard 96 >"$tmp/log-started" 2>&1 &&
  grep -q "warning: cannot write COATNET_STARTED_FILE=$tmp/no-such-dir/started" "$tmp/log-started"
check "an unwritable COATNET_STARTED_FILE is a warning, not a failed pack" $?
grep -q "packed 1000 records into 11 shards" "$tmp/log3"
check "3-rank summary names records and shards" $?
n1=$(ls "$tmp/one" | wc -l)
[[ $n1 -eq 11 ]]
check "11 shards written" $?
same=0
for f in "$tmp"/one/*.h5; do cmp -s "$f" "$tmp/three/$(basename "$f")" || same=1; done
check "1-rank and 3-rank shards are byte-identical" $same
ls "$tmp/three" | grep -q tmp
[[ $? -ne 0 ]]
check "no .tmp files remain" $?

"$coatnet" data inspect "$tmp/three/train-*.h5" --json | grep -q '"records":1000'
check "inspect reports 1000 records" $?
"$coatnet" data verify "$tmp/three/train-*.h5" >/dev/null 2>&1
check "verify passes intact shards" $?

victim="$tmp/three/train-00005-of-00011.h5"
python3 - "$victim" <<'PY'
import sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
i = data.find(bytes(range(200)))
assert i > 0, "marker not found"
data[i + 10] ^= 0xFF
open(p, "wb").write(bytes(data))
PY
out=$("$coatnet" data verify "$tmp/three/train-*.h5" 2>&1)
rc=$?
[[ $rc -eq 1 ]] && grep -q "train-00005-of-00011.h5: /images/bytes checksum differs" <<<"$out"
check "verify names the shard with a flipped byte" $?

cp "$tmp/one/train-00005-of-00011.h5" "$victim"
truncate -s 20000 "$tmp/three/train-00002-of-00011.h5"
out=$("$coatnet" data verify "$tmp/three/train-*.h5" 2>&1)
rc=$?
[[ $rc -eq 1 ]] && grep -q "BAD .*train-00002-of-00011.h5" <<<"$out"
check "verify names a truncated shard" $?

out=$("$coatnet" pack idx "$tmp/lab" "$tmp/lab" "$tmp/bad/x" 2>&1)
[[ $? -eq 1 ]] && grep -q "expected an image file" <<<"$out"
check "pack names a label file given as images" $?
out=$("$coatnet" pack imagefolderr a b 2>&1)
[[ $? -eq 2 ]] && grep -q "unknown source 'imagefolderr'" <<<"$out"
check "unknown pack source is a usage error" $?

if "$py" -c "import PIL" 2>/dev/null; then
  "$py" - "$tmp/folder" <<'PY'
import os, sys
from PIL import Image
root = sys.argv[1]
for c, cls in enumerate(["n01", "n02", "n03"]):
    os.makedirs(f"{root}/{cls}", exist_ok=True)
    for i in range(7):
        Image.new("RGB", (50 + i, 40 + c), (i * 30, c * 80, 100)).save(f"{root}/{cls}/{i}.JPEG", quality=90)
Image.new("L", (30, 30), 128).save(f"{root}/n02/gray.JPEG")
Image.new("RGB", (30, 30)).save(f"{root}/n03/png.JPEG", format="PNG")
open(f"{root}/n03/broken.JPEG", "wb").write(b"\xff\xd8\xff\xe0 truncated")
PY
  out=$(mpirun -np 2 "$coatnet" pack imagefolder "$tmp/folder" "$tmp/in/train" --records-per-shard 5 2>&1)
  rc=$?
  [[ $rc -eq 0 ]] && grep -q "packed 23 records into 5 shards .* 1 skipped, 2 converted" <<<"$out"
  check "pack imagefolder with 2 ranks: counts in the summary" $?
  grep -q "broken.JPEG: corrupt JPEG header" "$tmp/in/train-report.txt" &&
    grep -q "gray.JPEG: grayscale -> RGB JPEG" "$tmp/in/train-report.txt" &&
    grep -q "png.JPEG: PNG -> RGB JPEG" "$tmp/in/train-report.txt"
  check "the report names the skipped and converted files" $?
  "$coatnet" data verify "$tmp/in/train-*.h5" >/dev/null 2>&1
  check "verify decodes every packed JPEG" $?
else
  echo "SKIP: pack imagefolder part needs PIL in $py (launch/setup.sh installs it in .venv)"
fi

echo "pack_mpi: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
