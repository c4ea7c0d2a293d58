// Checkpoint shard files: HDF5, one dataset per segment ("<tensor>/<begin>", contiguous, no
// timestamps, so equal state gives byte-equal files), fsynced, with the XXH3 of the whole file.
// No LibTorch here: segments are raw float32/float64 arrays.
//
//   ShardFile f = write_shard(dir, "shard-00001-of-00002.h5", {{seg, DType::F32, ptr}});
//   verify_file(dir, f);                        // size and checksum, throws ShardError
//   read_range(dir, f, seg, from, count, out);  // elements [from, from+count) of the segment
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"

namespace coatnet::checkpoint {

struct ShardError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SegmentData {
  Segment segment;
  DType dtype = DType::F32;
  const void* data = nullptr;  // (end - begin) elements
};

// Writes, fsyncs and hashes DIR/NAME. Checks the free space first; a failed write (disk full)
// removes the partial file and throws ShardError naming the file, the bytes needed and errno.
ShardFile write_shard(const std::string& dir, const std::string& name,
                      const std::vector<SegmentData>& segments);

// Size and XXH3 against the manifest; throws ShardError naming the file and what differs.
void verify_file(const std::string& dir, const ShardFile& f);

// Reads `count` elements starting `from` elements into segment `g` of shard `f`.
void read_range(const std::string& dir, const ShardFile& f, const Segment& g, DType dtype,
                int64_t from, int64_t count, void* out);

// Elements [begin, end) of flat tensor `tensor`, gathered from every shard segment that
// overlaps them, into `out` (of the tensor's dtype).
void read_tensor(const std::string& dir, const Manifest& m, const std::string& tensor,
                 int64_t begin, int64_t end, void* out);

uint64_t hash_file(const std::string& path, int64_t* bytes = nullptr, bool fsync_too = false);

}  // namespace coatnet::checkpoint
