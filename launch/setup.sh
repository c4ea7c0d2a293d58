#!/usr/bin/env bash
# One-command set-up: installs what is missing, then configures and builds into build/.
# Idempotent: on a built tree it checks and returns in seconds.
#
#   launch/setup.sh                 everything (Debian packages, .venv with torch, build)
#   Torch_DIR=/opt/libtorch/share/cmake/Torch launch/setup.sh
#                                   use an existing LibTorch 2.x; no .venv torch is installed
#   COATNET_BUILD_TYPE=Debug        build type (default Release)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ---------------------------------------------------------------------------
packages=(build-essential cmake ninja-build ccache pkg-config git
          libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
          libboost-dev libboost-filesystem-dev libboost-stacktrace-dev
          libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libxxhash-dev zlib1g-dev libgtest-dev dataset-fashion-mnist
          clang libclang-rt-14-dev)
if ! python3 -m venv --help >/dev/null 2>&1; then packages+=(python3 python3-venv); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (no network?). Install by hand: ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null ||
      die "apt-get install failed. Install by hand: ${missing[*]}"
  else
    die "missing packages: ${missing[*]}
  run as root:  apt-get install ${missing[*]}
  or, on a cluster, load the modules that provide them (MPI: set MPI_HOME; HDF5: HDF5_ROOT)
  and point the build at an existing LibTorch: Torch_DIR=/path/to/libtorch/share/cmake/Torch $0"
  fi
fi

# --- LibTorch: the pinned wheel in .venv, unless Torch_DIR names another ----------------------
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE="${COATNET_BUILD_TYPE:-Release}"
            -DCOATNET_WERROR="${COATNET_WERROR:-OFF}")
if [[ -n ${Torch_DIR:-} ]]; then
  [[ -f $Torch_DIR/TorchConfig.cmake ]] || die "Torch_DIR=$Torch_DIR holds no TorchConfig.cmake"
  say "LibTorch from Torch_DIR=$Torch_DIR"
  cmake_args+=(-DTorch_DIR="$Torch_DIR")
else
  want_torch=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' launch/requirements.txt)
  [[ -x .venv/bin/python ]] || { say "creating .venv"; python3 -m venv .venv; }
  have=$(.venv/bin/python - <<'PY' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("torch"), m.version("timm"), m.version("safetensors"))
except m.PackageNotFoundError:
    pass
PY
)
  if [[ ${have%% *} != "$want_torch" || $have != *" "*" "* ]]; then
    say "installing Python packages (torch $want_torch with its CUDA libraries, timm): a few GB, minutes"
    .venv/bin/pip install -q --disable-pip-version-check -r launch/requirements.txt ||
      die "pip install failed (no network?). Either make PyPI reachable, or point the build at an
  existing LibTorch 2.x: Torch_DIR=/path/to/libtorch/share/cmake/Torch $0"
  fi
  # Read torch's CUDA version from its version.py: importing torch would take seconds.
  torch_cuda=$(sed -n "s/^cuda: .*= '\([0-9.]*\)'/\1/p" .venv/lib/python*/site-packages/torch/version.py)
  nvcc_bin=$(command -v nvcc || { [[ -x /usr/local/cuda/bin/nvcc ]] && echo /usr/local/cuda/bin/nvcc; } || true)
  if [[ -n $torch_cuda && -n $nvcc_bin ]]; then
    nvcc_major=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    [[ ${torch_cuda%%.*} == "$nvcc_major" ]] ||
      die "torch $want_torch is built for CUDA $torch_cuda but $nvcc_bin is CUDA $nvcc_major.
  Pin a torch whose CUDA major matches nvcc in launch/requirements.txt, or set CUDACXX to another nvcc."
  fi
fi

# --- configure and build ------------------------------------------------------------------------
if [[ ! -f build/build.ninja ]]; then
  say "configuring build/"
  cmake -S . -B build "${cmake_args[@]}"
fi
say "building (ninja, ccache)"
cmake --build build
say "ready: build/bin/coatnet"
