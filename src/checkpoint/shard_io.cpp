#include "checkpoint/shard_io.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/hdf5_util.h"
#include "util/atomic_file.h"

namespace coatnet::checkpoint {

namespace fs = std::filesystem;
using data::h5::Id;

namespace {

// HDF5 is built without thread safety; the asynchronous writer and the main thread (loading,
// verifying) never overlap in it.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

hid_t h5_type(DType t) {
  return t == DType::F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
}

std::string errno_text() {
  return errno ? std::string(" (") + std::strerror(errno) + ")" : "";
}

}  // namespace

uint64_t hash_file(const std::string& path, int64_t* bytes, bool fsync_too) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw ShardError(path + ": cannot open" + errno_text());
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(), &XXH3_freeState);
  XXH3_64bits_reset(st.get());
  std::vector<char> buf(8 << 20);
  int64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      ::close(fd);
      throw ShardError(path + ": read failed" + errno_text());
    }
    if (n == 0) break;
    XXH3_64bits_update(st.get(), buf.data(), static_cast<size_t>(n));
    total += n;
  }
  const bool sync_failed = fsync_too && ::fsync(fd) != 0;
  ::close(fd);
  if (sync_failed) throw ShardError(path + ": fsync failed" + errno_text());
  if (bytes) *bytes = total;
  return XXH3_64bits_digest(st.get());
}

namespace {

// Fault injection for the disk-full test: COATNET_FAULT_FILL_DISK=STEP_DIR (e.g. step-00000032)
// fills the filesystem once a shard of that step passed the space check and its file exists,
// leaving room for half of its payload, so the data write meets the kernel's ENOSPC halfway, as
// when another job fills a shared disk. (Filling before the file's creation let two ranks filling
// at once leave no room for the creation itself.) The filler lives in the step directory, which the
// failed save removes.
void fill_disk_if_asked(const std::string& dir, const std::string& name, int64_t payload) {
  const char* step = std::getenv("COATNET_FAULT_FILL_DISK");
  if (!step || fs::path(dir).filename() != step) return;
  const int fd = ::open((dir + "/" + name + ".filler").c_str(), O_WRONLY | O_CREAT, 0600);
  if (fd < 0) return;
  const std::vector<char> zeros(1 << 16, 0);
  struct statvfs vfs {};
  while (::statvfs(dir.c_str(), &vfs) == 0 &&
         static_cast<int64_t>(vfs.f_bavail * vfs.f_frsize) > payload / 2 &&
         ::write(fd, zeros.data(), zeros.size()) > 0) {
  }
  ::close(fd);
}

}  // namespace

ShardFile write_shard(const std::string& dir, const std::string& name,
                      const std::vector<SegmentData>& segments) {
  const std::string path = dir + "/" + name;
  int64_t payload = 0;
  for (const auto& s : segments) payload += (s.segment.end - s.segment.begin) * dtype_size(s.dtype);
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) == 0) {
    const auto free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    if (free_bytes < payload + (1 << 20))
      throw ShardError(path + ": not enough space: " + std::to_string(payload) +
                       " bytes to write, " + std::to_string(free_bytes) + " free on the disk");
  }
  ShardFile out;
  out.file = name;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    data::h5::QuietErrors quiet;
    auto fail = [&](const std::string& what) {
      const std::string err = errno_text();
      std::error_code ec;
      fs::remove(path, ec);
      return ShardError(path + ": " + what + " failed" + err + " writing " +
                        std::to_string(payload) + " bytes");
    };
    errno = 0;
    Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (file < 0) throw fail("H5Fcreate");
    fill_disk_if_asked(dir, name, payload);
    Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_obj_track_times(dcpl, false);
    Id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_obj_track_times(gcpl, false);
    for (const auto& s : segments) {
      const Segment& g = s.segment;
      if (H5Lexists(file, g.tensor.c_str(), H5P_DEFAULT) <= 0) {
        Id grp(H5Gcreate2(file, g.tensor.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT), H5Gclose);
        if (grp < 0) throw fail("creating group " + g.tensor);
      }
      const hsize_t n = static_cast<hsize_t>(g.end - g.begin);
      Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
      Id ds(H5Dcreate2(file, g.dataset().c_str(), h5_type(s.dtype), space, H5P_DEFAULT, dcpl,
                       H5P_DEFAULT),
            H5Dclose);
      if (ds < 0) throw fail("creating dataset " + g.dataset());
      if (H5Dwrite(ds, h5_type(s.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data) < 0)
        throw fail("writing dataset " + g.dataset());
      out.segments.push_back(g);
    }
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) throw fail("H5Fflush");
    file.reset();
  }
  try {
    // The fsync (disk-bound) and the checksum read-back (from the page cache) overlap.
    std::string sync_error;
    std::thread syncer([&] {
      try {
        util::fsync_path(path);
      } catch (const util::IoError& e) {
        sync_error = e.what();
      }
    });
    try {
      out.xxh3 = hash_file(path, &out.bytes);
    } catch (...) {
      syncer.join();
      throw;
    }
    syncer.join();
    if (!sync_error.empty()) throw ShardError(sync_error);
  } catch (const ShardError&) {
    std::error_code ec;
    fs::remove(path, ec);
    throw;
  }
  return out;
}

void verify_file(const std::string& dir, const ShardFile& f) {
  const std::string path = dir + "/" + f.file;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw ShardError(path + ": missing");
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (size != f.bytes)
    throw ShardError(path + ": " + std::to_string(size) + " bytes, the manifest says " +
                     std::to_string(f.bytes) + " (truncated or overwritten)");
  const uint64_t h = hash_file(path);
  if (h != f.xxh3)
    throw ShardError(path + ": XXH3 " + hex64(h) + " differs from the manifest's " + hex64(f.xxh3) +
                     " (the file is corrupt)");
}

void read_range(const std::string& dir, const ShardFile& f, const Segment& g, DType dtype,
                int64_t from, int64_t count, void* out) {
  const std::string path = dir + "/" + f.file;
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  data::h5::QuietErrors quiet;
  Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file < 0) throw ShardError(path + ": cannot open as HDF5");
  Id ds(H5Dopen2(file, g.dataset().c_str(), H5P_DEFAULT), H5Dclose);
  if (ds < 0) throw ShardError(path + ": no dataset '" + g.dataset() + "'");
  Id space(H5Dget_space(ds), H5Sclose);
  hsize_t n = 0;
  if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, &n, nullptr) < 0 ||
      static_cast<int64_t>(n) != g.end - g.begin)
    throw ShardError(path + ": dataset '" + g.dataset() + "' is not 1-D of " +
                     std::to_string(g.end - g.begin) + " elements as the manifest says");
  Id type(H5Dget_type(ds), H5Tclose);
  if (H5Tget_class(type) != H5T_FLOAT ||
      static_cast<int64_t>(H5Tget_size(type)) != dtype_size(dtype))
    throw ShardError(path + ": dataset '" + g.dataset() + "' is not " + dtype_name(dtype));
  if (from < 0 || count < 0 || from + count > g.end - g.begin)
    throw ShardError(path + ": range past the end of dataset '" + g.dataset() + "'");
  if (count == 0) return;
  const hsize_t start = static_cast<hsize_t>(from), cnt = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &cnt, nullptr);
  Id mem(H5Screate_simple(1, &cnt, nullptr), H5Sclose);
  if (H5Dread(ds, h5_type(dtype), mem, space, H5P_DEFAULT, out) < 0)
    throw ShardError(path + ": reading dataset '" + g.dataset() + "' failed");
}

void read_tensor(const std::string& dir, const Manifest& m, const std::string& tensor,
                 int64_t begin, int64_t end, void* out) {
  const TensorSpec* t = m.tensor(tensor);
  if (!t) throw ShardError(dir + ": the checkpoint has no tensor '" + tensor + "'");
  if (begin < 0 || end > t->numel || begin > end)
    throw ShardError(dir + ": range [" + std::to_string(begin) + ", " + std::to_string(end) +
                     ") is outside tensor '" + tensor + "'");
  auto* bytes = static_cast<char*>(out);
  for (const ShardFile& f : m.shards)
    for (const Segment& g : f.segments) {
      if (g.tensor != tensor) continue;
      const int64_t lo = std::max(begin, g.begin), hi = std::min(end, g.end);
      if (lo >= hi) continue;
      read_range(dir, f, g, t->dtype, lo - g.begin, hi - lo,
                 bytes + (lo - begin) * dtype_size(t->dtype));
    }
}

}  // namespace coatnet::checkpoint
