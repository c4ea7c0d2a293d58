#!/usr/bin/env bash
# Builds the project here for a GPU machine whose minutes are borrowed: against the LibTorch of
# the torch version that machine's Python has (the wheel fetched from PyPI; its C++ libraries are
# the same for every Python version), for its GPU architecture, in Release. Carry DIR beside the
# bundle (launch/gpu-bundle.sh); there `launch/gpu-check.sh --bundle B --prebuilt DIR` uses it
# when it runs, and builds from source when it does not.
#
#   launch/gpu-prebuild.sh DIR [--torch VERSION] [--arch LIST]
#
#   --torch VERSION  that machine's torch (python3 -c 'import torch; print(torch.__version__)'),
#                    default 2.11.0+cu130; its CUDA suffix must match the PyPI wheel's
#   --arch LIST      TORCH_CUDA_ARCH_LIST for src/cuda, default 9.0 (H100, H200)
#
# Writes DIR/bin, DIR/lib/coatnet/plugins and DIR/BUILD_INFO. The wheel and the objects
# stay in /tmp/coatnet-prebuild-VERSION, so a second run rebuilds only what changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu-prebuild: error: $*" >&2; exit 1; }
say() { printf '[gpu-prebuild] %s\n' "$*"; }
dir="" version=2.11.0+cu130 arch=9.0
while (($#)); do
  case $1 in
    --torch) version=${2:?--torch needs a version}; shift 2 ;;
    --arch) arch=${2:?--arch needs a list}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option '$1'" ;;
    *) [[ -z $dir ]] || { usage >&2; die "one DIR only (got '$dir' and '$1')"; }; dir=$1; shift ;;
  esac
done
[[ -n $dir ]] || { usage >&2; exit 2; }

"$root/launch/setup.sh" >/dev/null  # .venv (its NVIDIA libraries resolve LibTorch's at link time)
py="$root/.venv/bin/python"
cache=/tmp/coatnet-prebuild-$version
site="$cache/site"
if [[ ! -f $site/torch/version.py ]]; then
  say "fetching torch ${version%%+*} from PyPI"
  mkdir -p "$cache/wheel" "$site"
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$cache/wheel" "torch==${version%%+*}" ||
    die "could not fetch torch==${version%%+*} (is it on PyPI for this platform?)"
  (cd "$site" && unzip -q -o "$cache"/wheel/torch-*.whl 'torch/*')
fi
got=$("$py" -c "import runpy; v = runpy.run_path('$site/torch/version.py'); print(v['__version__'])")
[[ $version == *+* && $got != "$version" ]] &&
  die "PyPI's torch ${version%%+*} is $got, not $version: build on the GPU machine instead"
# LibTorch's libraries find CUDA's (cuDNN, cuBLAS, NCCL, ...) in ../../nvidia beside them.
ln -sfn "$("$py" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')/nvidia" "$site/nvidia"

say "building torch $got, TORCH_CUDA_ARCH_LIST=$arch, in $cache/build"
export PATH="/usr/local/cuda/bin:$PATH"
TORCH_CUDA_ARCH_LIST=$arch cmake -S "$root" -B "$cache/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTorch_DIR="$site/torch/share/cmake/Torch" -DCOATNET_PYTHON="$py" >"$cache/configure.log" ||
  { tail -20 "$cache/configure.log"; die "configure failed ($cache/configure.log)"; }
grep -q 'CUDA kernels *found' "$cache/configure.log" && grep -q 'NCCL *found' "$cache/configure.log" ||
  { grep 'coatnet:' "$cache/configure.log"; die "no nvcc or no NCCL: this build would have no GPU path"; }
cmake --build "$cache/build" -j "$(nproc)" >"$cache/build.log" ||
  { tail -30 "$cache/build.log"; die "build failed ($cache/build.log)"; }

rm -rf "$dir" && mkdir -p "$dir/lib"
cp -a "$cache/build/bin" "$dir/"
cp -a "$cache/build/lib/coatnet" "$dir/lib/"
# Not stripped: symbols make a crash on that machine readable (cuda-gdb, backtraces).
{
  echo "torch $got, TORCH_CUDA_ARCH_LIST=$arch, commit $(git -C "$root" rev-parse --short HEAD)$(
    git -C "$root" diff --quiet HEAD || echo '+changes'), built $(date -u +%FT%TZ)"
} >"$dir/BUILD_INFO"
say "wrote $dir: $(du -sh "$dir" | cut -f1) ($(cat "$dir/BUILD_INFO"))"
