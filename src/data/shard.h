// Dataset shards: self-describing HDF5 files (format in docs/ARCHITECTURE.md and README "Data
// format").
//
//   /images/bytes    uint8, every record's encoded bytes back to back (contiguous, unfiltered)
//   /images/offsets  uint64 (N+1)      /images/shape  uint32 (N, 3) = h, w, c
//   /labels/class    int32 (N)         single-label, or for multi-label (JFT) a CSR pair:
//   /labels/offsets  uint64 (N+1) + /labels/indices int32 (+ /labels/weights float32)
//   attributes: format_version, encoding (jpeg|raw), num_classes, class_names, source,
//               records, bytes_xxh3 (XXH3-64 of /images/bytes)
//
// Readers take the file offset of /images/bytes once and pread records from any thread: no
// HDF5 call (and so no HDF5 global lock) on the hot path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace coatnet::data {

constexpr int64_t kFormatVersion = 1;

struct ShardMeta {
  std::string encoding = "jpeg";  // jpeg | raw (uint8 HWC pixels)
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // empty or num_classes names
  std::string source;                    // what was packed, for people reading the file
  bool multi_label = false;
};

struct Record {
  std::vector<uint8_t> bytes;
  uint32_t height = 0, width = 0, channels = 0;
  int32_t label = -1;                // single-label
  std::vector<int32_t> labels;       // multi-label
  std::vector<float> label_weights;  // optional, same length as labels
};

// Collects records and writes the shard on commit(), atomically (util::write_atomically), so an
// interrupted pack never leaves a file that looks valid. Without commit() nothing is written.
class ShardWriter {
 public:
  ShardWriter(std::string path, ShardMeta meta);
  void add(Record r);
  size_t size() const { return records_.size(); }
  void commit();

 private:
  std::string path_;
  ShardMeta meta_;
  std::vector<Record> records_;
};

// One shard opened for reading. Thread-safe after construction.
class Shard {
 public:
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const std::string& path() const { return path_; }
  const ShardMeta& meta() const { return meta_; }
  int64_t size() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  uint64_t bytes_size() const { return offsets_.back(); }
  uint64_t bytes_xxh3() const { return xxh3_; }

  // Record i's encoded bytes (pread from the file) with its shape and labels.
  Record read(int64_t i) const;
  void read_bytes(int64_t i, std::vector<uint8_t>* out) const;
  uint32_t height(int64_t i) const { return shape_[3 * i]; }
  uint32_t width(int64_t i) const { return shape_[3 * i + 1]; }
  uint32_t channels(int64_t i) const { return shape_[3 * i + 2]; }
  int32_t label(int64_t i) const { return labels_.empty() ? -1 : labels_[i]; }

 private:
  std::string path_;
  ShardMeta meta_;
  int fd_ = -1;
  uint64_t bytes_offset_ = 0;  // file offset of /images/bytes
  uint64_t xxh3_ = 0;
  std::vector<uint64_t> offsets_;
  std::vector<uint32_t> shape_;
  std::vector<int32_t> labels_;
  std::vector<uint64_t> label_offsets_;
  std::vector<int32_t> label_indices_;
  std::vector<float> label_weights_;
};

// Shard files named PREFIX-00003-of-00010.h5.
std::string shard_path(const std::string& prefix, int64_t index, int64_t count);

// XXH3-64 of /images/bytes, streamed from the file.
uint64_t checksum_bytes(const Shard& shard);

}  // namespace coatnet::data
