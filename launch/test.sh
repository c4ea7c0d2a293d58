#!/usr/bin/env bash
# Build and run every test: set-up (launch/setup.sh), then the whole suite through ctest.
# Extra arguments go to ctest, e.g. launch/test.sh -R parity
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/launch/setup.sh"
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$root/build"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
