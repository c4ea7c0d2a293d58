#include "data/shard.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "data/hdf5_util.h"
#include "util/atomic_file.h"

namespace coatnet::data {

std::string shard_path(const std::string& prefix, int64_t index, int64_t count) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05lld-of-%05lld.h5", static_cast<long long>(index),
                static_cast<long long>(count));
  return prefix + buf;
}

ShardWriter::ShardWriter(std::string path, ShardMeta meta)
    : path_(std::move(path)), meta_(std::move(meta)) {}

void ShardWriter::add(Record r) {
  records_.push_back(std::move(r));
}

void ShardWriter::commit() {
  const size_t n = records_.size();
  std::vector<uint64_t> offsets(n + 1, 0);
  for (size_t i = 0; i < n; ++i) offsets[i + 1] = offsets[i] + records_[i].bytes.size();
  std::vector<uint8_t> bytes;
  bytes.reserve(offsets[n]);
  std::vector<uint32_t> shape;
  shape.reserve(3 * n);
  for (const auto& r : records_) {
    bytes.insert(bytes.end(), r.bytes.begin(), r.bytes.end());
    shape.insert(shape.end(), {r.height, r.width, r.channels});
  }
  util::write_atomically(path_, [&](const std::string& tmp) {
    h5::Id file = h5::create_file(tmp);
    h5::QuietErrors quiet;
    h5::Id images(COATNET_H5_ID(H5Gcreate2(file, "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                tmp, "creating group images"),
                  H5Gclose);
    h5::Id labels(COATNET_H5_ID(H5Gcreate2(file, "labels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                tmp, "creating group labels"),
                  H5Gclose);
    h5::write_all(images, "bytes", bytes, {bytes.size()});
    h5::write_all(images, "offsets", offsets, {n + 1});
    h5::write_all(images, "shape", shape, {n, 3});
    h5::write_string_attr(images, "encoding", meta_.encoding);
    if (meta_.multi_label) {
      std::vector<uint64_t> loff(n + 1, 0);
      std::vector<int32_t> idx;
      std::vector<float> w;
      bool weighted = false;
      for (size_t i = 0; i < n; ++i) {
        loff[i + 1] = loff[i] + records_[i].labels.size();
        idx.insert(idx.end(), records_[i].labels.begin(), records_[i].labels.end());
        weighted = weighted || !records_[i].label_weights.empty();
      }
      for (const auto& r : records_) {
        if (!weighted) break;
        if (r.label_weights.empty())
          w.insert(w.end(), r.labels.size(), 1.0f);
        else
          w.insert(w.end(), r.label_weights.begin(), r.label_weights.end());
      }
      h5::write_all(labels, "offsets", loff, {n + 1});
      h5::write_all(labels, "indices", idx, {idx.size()});
      if (weighted) h5::write_all(labels, "weights", w, {w.size()});
    } else {
      std::vector<int32_t> cls(n);
      for (size_t i = 0; i < n; ++i) cls[i] = records_[i].label;
      h5::write_all(labels, "class", cls, {n});
    }
    h5::write_int_attr(file, "format_version", kFormatVersion);
    h5::write_int_attr(file, "num_classes", meta_.num_classes);
    h5::write_strings_attr(file, "class_names", meta_.class_names);
    h5::write_string_attr(file, "source", meta_.source);
    h5::write_int_attr(file, "records", static_cast<int64_t>(n));
    h5::write_int_attr(file, "multi_label", meta_.multi_label ? 1 : 0);
    h5::write_int_attr(file, "bytes_xxh3",
                       static_cast<int64_t>(XXH3_64bits(bytes.data(), bytes.size())));
    COATNET_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), tmp, "flushing the shard (disk full?)");
  });
}

Shard::Shard(const std::string& path) : path_(path) {
  {
    h5::Id file = h5::open_file(path);
    int64_t version = h5::read_int_attr(file, "format_version", path);
    if (version != kFormatVersion)
      throw h5::Error(path + ": format_version " + std::to_string(version) +
                      ", this coatnet reads " + std::to_string(kFormatVersion) +
                      " (re-pack with this version)");
    meta_.num_classes = h5::read_int_attr(file, "num_classes", path);
    meta_.class_names = h5::read_strings_attr(file, "class_names", path);
    meta_.source = h5::read_string_attr(file, "source", path);
    meta_.multi_label = h5::read_int_attr(file, "multi_label", path) != 0;
    xxh3_ = static_cast<uint64_t>(h5::read_int_attr(file, "bytes_xxh3", path));
    offsets_ = h5::read_all<uint64_t>(file, "/images/offsets", path);
    std::vector<hsize_t> dims;
    shape_ = h5::read_all<uint32_t>(file, "/images/shape", path, &dims);
    h5::Id images(H5Gopen2(file, "images", H5P_DEFAULT), H5Gclose);
    meta_.encoding = h5::read_string_attr(images, "encoding", path);
    if (meta_.multi_label) {
      label_offsets_ = h5::read_all<uint64_t>(file, "/labels/offsets", path);
      label_indices_ = h5::read_all<int32_t>(file, "/labels/indices", path);
      if (h5::exists(file, "/labels/weights"))
        label_weights_ = h5::read_all<float>(file, "/labels/weights", path);
    } else {
      labels_ = h5::read_all<int32_t>(file, "/labels/class", path);
    }
    h5::Id bytes = h5::open_dataset(file, "/images/bytes", path);
    h5::Id space(H5Dget_space(bytes), H5Sclose);
    hsize_t total = 0;
    H5Sget_simple_extent_dims(space, &total, nullptr);
    // Everything the hot path trusts is checked here, once.
    int64_t n = static_cast<int64_t>(offsets_.size()) - 1;
    auto bad = [&](const std::string& what) { throw h5::Error(path + ": " + what); };
    if (n < 0) bad("/images/offsets is empty");
    if (h5::read_int_attr(file, "records", path) != n) bad("records attribute != offsets - 1");
    if (offsets_[0] != 0 || offsets_.back() != total)
      bad("/images/offsets do not span /images/bytes (" + std::to_string(total) + " bytes)");
    for (int64_t i = 0; i < n; ++i)
      if (offsets_[i + 1] < offsets_[i])
        bad("/images/offsets decrease at record " + std::to_string(i));
    if (dims.size() != 2 || dims[0] != static_cast<hsize_t>(n) || dims[1] != 3)
      bad("/images/shape is not (records, 3)");
    if (!meta_.multi_label && static_cast<int64_t>(labels_.size()) != n)
      bad("/labels/class has " + std::to_string(labels_.size()) + " entries for " +
          std::to_string(n) + " records");
    if (meta_.multi_label) {
      if (static_cast<int64_t>(label_offsets_.size()) != n + 1 || label_offsets_[0] != 0 ||
          label_offsets_.back() != label_indices_.size())
        bad("/labels/offsets do not span /labels/indices");
      for (int64_t i = 0; i < n; ++i)  // found by fuzz_shard: a decrease read out of bounds
        if (label_offsets_[i + 1] < label_offsets_[i])
          bad("/labels/offsets decrease at record " + std::to_string(i));
      if (!label_weights_.empty() && label_weights_.size() != label_indices_.size())
        bad("/labels/weights has " + std::to_string(label_weights_.size()) + " entries for " +
            std::to_string(label_indices_.size()) + " label indices");
    }
    if (total > 0) {
      haddr_t addr = H5Dget_offset(bytes);
      if (addr == HADDR_UNDEF) bad("/images/bytes is not stored contiguously (re-pack it)");
      bytes_offset_ = addr;
    }
  }
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw h5::Error(path + ": cannot open: " + std::strerror(errno));
}

Shard::~Shard() {
  if (fd_ >= 0) ::close(fd_);
}

void Shard::read_bytes(int64_t i, std::vector<uint8_t>* out) const {
  uint64_t begin = offsets_[i], len = offsets_[i + 1] - begin;
  out->resize(len);
  size_t done = 0;
  while (done < len) {
    ssize_t r = ::pread(fd_, out->data() + done, len - done,
                        static_cast<off_t>(bytes_offset_ + begin + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw h5::Error(path_ + ": record " + std::to_string(i) + ": read failed (" +
                      (r == 0 ? "file truncated" : std::strerror(errno)) + ")");
    done += static_cast<size_t>(r);
  }
}

Record Shard::read(int64_t i) const {
  Record r;
  read_bytes(i, &r.bytes);
  r.height = height(i);
  r.width = width(i);
  r.channels = channels(i);
  if (meta_.multi_label) {
    r.labels.assign(label_indices_.begin() + label_offsets_[i],
                    label_indices_.begin() + label_offsets_[i + 1]);
    if (!label_weights_.empty())
      r.label_weights.assign(label_weights_.begin() + label_offsets_[i],
                             label_weights_.begin() + label_offsets_[i + 1]);
  } else {
    r.label = labels_[i];
  }
  return r;
}

uint64_t checksum_bytes(const Shard& shard) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> buf;
  for (int64_t i = 0; i < shard.size(); ++i) {
    shard.read_bytes(i, &buf);
    XXH3_64bits_update(state, buf.data(), buf.size());
  }
  uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

}  // namespace coatnet::data
