#!/usr/bin/env bash
# Packs what a GPU machine without the project's system libraries lacks to build and run it:
# the Debian packages' headers that the build actually reads, their libraries with everything
# those need at run time, Open MPI's runtime (mpirun, orted, its components and help files),
# pkg-config and the CMake package files. Run it here, where Debian's packages are installed
# (it runs launch/setup.sh first); carry DIR to the GPU machine; there,
# `launch/gpu-check.sh --bundle DIR` builds against the bundle and that machine's torch.
#
#   launch/gpu-bundle.sh DIR        -> DIR/coatnet-gpu-bundle.tar.xz and DIR/MANIFEST.txt
#
# Layout inside the archive: usr/... as on Debian (so Open MPI relocates with OPAL_PREFIX),
# etc/openmpi, and fallback/: libraries the packaged ones need that a typical GPU image has
# already (OpenSSL, curl, Kerberos, ...); gpu-check.sh puts on the library path only those
# that machine lacks, so its own copies stay in use where it has them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 1 ]] || { usage >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
say() { printf '[gpu-bundle] %s\n' "$*"; }
limit_mib=40

"$root/launch/setup.sh" >/dev/null
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

# The packages the GPU machine lacks (its facts: issue 12 and README "GPU"). Their whole file
# lists, less documentation, make the candidates; headers are then cut down to those read.
packages=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libevent-core-2.1-7
          libevent-pthreads-2.1-7 libpmix2 libhdf5-dev libhdf5-103-1 libsz2 libaec0
          libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libcli11-dev libboost1.74-dev libboost-filesystem1.74-dev
          libboost-filesystem1.74.0 libturbojpeg0-dev libturbojpeg0 libjpeg62-turbo-dev
          libjpeg62-turbo libpng-dev libpng16-16 libxxhash-dev libxxhash0 zlib1g-dev libgtest-dev
          pkgconf pkgconf-bin libpkgconf3)
stage=$(mktemp -d /tmp/coatnet-bundle.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/root" "$stage/root/fallback"

# Headers the build reads: ninja's dependency log of every object file.
(cd "$root/build" && ninja -t deps) | sed -n 's/^    //p' | sort -u >"$stage/read-headers"

files=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    { echo "[gpu-bundle] error: Debian package $p is not installed (run launch/setup.sh)" >&2; exit 1; }
  while IFS= read -r f; do
    [[ -L $f || -f $f ]] || continue
    case $f in
      /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/bug/*) continue ;;
      /usr/bin/h5*) continue ;;  # wrapper scripts with /usr written in: FindHDF5 searches instead
      *openmpi3/mca_*ucx* | *openmpi3/mca_*ofi* | *openmpi3/mca_*openib* | *openmpi3/mca_*psm* |\
      *openmpi3/mca_*verbs* | *openmpi3/mca_*uct*) continue ;;  # excluded by Debian's mca params
      *.a) [[ $p == libgtest-dev ]] || continue ;;               # GoogleTest is static only
      # Boost is 160 MB of headers: those the build reads, and the configuration headers that
      # another compiler (the GPU machine's) may read instead.
      /usr/include/boost/config/* | /usr/include/boost/predef/*) ;;
      /usr/include/boost/*) grep -qxF "$f" "$stage/read-headers" || continue ;;
    esac
    files+=("$f")
  done < <(dpkg -L "$p")
done
# Open MPI's wrapper compilers and pkg-config's alternatives links point through /etc.
for f in /usr/bin/mpicc /usr/bin/mpirun /usr/bin/mpiexec /usr/bin/pkg-config; do files+=("$f"); done
printf '%s\n' "${files[@]}" | sort -u >"$stage/files"
while IFS= read -r f; do
  mkdir -p "$stage/root$(dirname "$f")"
  if [[ -L $f && $f == /usr/bin/* ]]; then
    cp -L "$f" "$stage/root$f"  # /etc/alternatives links: take what they name
  else
    cp -a "$f" "$stage/root$f"
  fi
done <"$stage/files"
# A header the build reads may be in none of these packages' lists under its read name (a
# Debian symlink such as hdf5.h -> serial/hdf5.h): take it from the build's list directly.
grep -E '^/usr/(include|lib/'"$arch"'/openmpi/include)/' "$stage/read-headers" | while IFS= read -r h; do
  [[ -e $stage/root$h ]] && continue
  owner=$(dpkg -S "$h" 2>/dev/null | cut -d: -f1 || true)
  case " ${packages[*]} " in *" $owner "*) ;; *) continue ;; esac
  mkdir -p "$stage/root$(dirname "$h")"
  cp -aL "$h" "$stage/root$h"
done
[[ -d /etc/openmpi ]] && { mkdir -p "$stage/root/etc"; cp -a /etc/openmpi "$stage/root/etc/"; }

# Run-time closure: every library an ELF file in the bundle needs that is neither in the
# bundle nor part of the C/C++ runtime goes to fallback/.
base='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libutil)\.so'
find "$stage/root/usr" -type f \( -name '*.so*' -o -path '*/bin/*' \) -print0 |
  xargs -0 file -L | grep -E 'ELF .*(shared object|executable)' | cut -d: -f1 |
  xargs -r ldd 2>/dev/null | awk '/=> \//{print $1, $3}' | sort -u |
  while read -r soname path; do
    [[ $soname =~ $base ]] && continue
    find "$stage/root" -name "$soname" -print -quit | grep -q . && continue
    cp -L "$path" "$stage/root/fallback/$soname"
  done

{
  echo "# coatnet GPU bundle, made $(date -u +%FT%TZ) on $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "# Debian packages:"
  for p in "${packages[@]}"; do dpkg-query -W -f='#   ${Package} ${Version}\n' "$p"; done
  (cd "$stage/root" && find . -type f -o -type l | sort)
} >"$out/MANIFEST.txt"
say "compressing $(du -sh "$stage/root" | cut -f1) ($(wc -l <"$stage/files") files from ${#packages[@]} packages, $(ls "$stage/root/fallback" | wc -l) fallback libraries)"
tar -C "$stage/root" -cf - . | xz -T0 -6 >"$out/coatnet-gpu-bundle.tar.xz"
size=$(stat -c %s "$out/coatnet-gpu-bundle.tar.xz")
say "wrote $out/coatnet-gpu-bundle.tar.xz: $((size / 1024 / 1024)) MiB (limit $limit_mib MiB)"
((size <= limit_mib * 1024 * 1024)) || { echo "[gpu-bundle] error: over $limit_mib MiB" >&2; exit 1; }
