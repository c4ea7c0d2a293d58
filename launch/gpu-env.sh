# Sourced: puts the libraries of a bundle made by launch/gpu-bundle.sh in reach of the build
# (CMake, pkg-config, Open MPI's wrappers) and of the programs it builds (the library path,
# Open MPI's install directories relocated).
#
#   source launch/gpu-env.sh DIR/coatnet-gpu-bundle.tar.xz   # unpacks to $B (once), exports
#
# B defaults to /tmp/coatnet-gpu-bundle. Libraries under fallback/ (what the packaged ones need
# that a GPU image usually has: OpenSSL, curl, Kerberos, ...) go on the library path only when
# this machine lacks them, so its own copies stay in use.
_archive=${1:?usage: source launch/gpu-env.sh BUNDLE.tar.xz}
B=${B:-/tmp/coatnet-gpu-bundle}
if [[ ! -f $B/.complete ]]; then
  rm -rf "$B" && mkdir -p "$B" && xz -dc "$_archive" | tar -C "$B" -xf - && touch "$B/.complete" ||
    { echo "gpu-env: could not unpack $_archive into $B" >&2; return 1; }
fi
_arch=x86_64-linux-gnu
mkdir -p "$B/fallback-used"
for _f in "$B"/fallback/*; do
  [[ -e $_f ]] || continue
  _so=$(basename "$_f")
  # In the loader's cache, and still on disk (a cache can be stale).
  _have=0
  for _p in $(ldconfig -p | awk -v so="$_so" '$1 == so {print $NF}'); do [[ -e $_p ]] && _have=1; done
  ((_have)) || ln -sf "$_f" "$B/fallback-used/$_so"
done
export PATH="$B/usr/bin:$PATH"
export LD_LIBRARY_PATH="$B/usr/lib/$_arch:$B/usr/lib/$_arch/openmpi/lib:$B/usr/lib/$_arch/hdf5/serial:$B/fallback-used${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$B/usr/lib/$_arch/pkgconfig:$B/usr/share/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$B"
# Open MPI (Debian's layout) relocated: every install directory it looks up.
export OPAL_PREFIX="$B/usr" OPAL_EXEC_PREFIX="$B/usr" OPAL_BINDIR="$B/usr/bin"
export OPAL_LIBDIR="$B/usr/lib/$_arch/openmpi/lib" OPAL_INCLUDEDIR="$B/usr/lib/$_arch/openmpi/include"
export OPAL_PKGLIBDIR="$B/usr/lib/$_arch/openmpi/lib/openmpi3" OPAL_DATADIR="$B/usr/share"
export OPAL_DATAROOTDIR="$B/usr/share" OPAL_PKGDATADIR="$B/usr/share/openmpi"
export OPAL_SYSCONFDIR="$B/etc/openmpi"
# Debian's PMIx lives under a prefix of its own. A machine with its own PMIx (another version)
# at the path compiled in gets "unable to open ... pmix_mca_pcompress_zlib" lines (ignored, as
# they say) and a banner about compression, which is silenced.
export PMIX_INSTALL_PREFIX="$B/usr/lib/$_arch/pmix2" PMIX_MCA_pcompress_base_silence_warning=1
# Debian's multiarch headers (jconfig.h) are found by its compiler's default search path, not
# by the .pc files.
export CPATH="$B/usr/include/$_arch${CPATH:+:$CPATH}"
export CMAKE_PREFIX_PATH="$B/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
unset _archive _arch _f _so _p _have
