#include "data/pack.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "data/idx.h"
#include "util/progress.h"

namespace coatnet::data {

namespace {

void make_parent_dir(const std::string& prefix) {
  auto parent = std::filesystem::path(prefix).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
}

}  // namespace

PackResult pack_idx(const std::string& images_path, const std::string& labels_path,
                    const std::string& out_prefix, const PackOptions& o) {
  if (o.records_per_shard < 1)
    throw std::invalid_argument("--records-per-shard " + std::to_string(o.records_per_shard));
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3)
    throw std::runtime_error(images_path + ": expected an image file (N x H x W), got " +
                             std::to_string(images.dims.size()) + " dimensions");
  if (labels.dims.size() != 1)
    throw std::runtime_error(labels_path + ": expected a label file (N), got " +
                             std::to_string(labels.dims.size()) + " dimensions");
  const int64_t n = images.dims[0], h = images.dims[1], w = images.dims[2];
  if (labels.dims[0] != n)
    throw std::runtime_error(labels_path + " has " + std::to_string(labels.dims[0]) +
                             " labels for " + std::to_string(n) + " images in " + images_path);
  int64_t max_label = -1;
  for (uint8_t l : labels.data) max_label = std::max<int64_t>(max_label, l);
  ShardMeta meta;
  meta.encoding = "raw";
  meta.num_classes = o.num_classes > 0 ? o.num_classes : max_label + 1;
  meta.class_names = o.class_names;
  meta.source = "idx:" + std::filesystem::path(images_path).filename().string();
  if (!meta.class_names.empty() &&
      static_cast<int64_t>(meta.class_names.size()) != meta.num_classes)
    throw std::invalid_argument(std::to_string(meta.class_names.size()) + " class names for " +
                                std::to_string(meta.num_classes) + " classes");
  for (int64_t i = 0; i < n; ++i)
    if (labels.data[i] >= meta.num_classes)
      throw std::runtime_error(labels_path + ": label " + std::to_string(labels.data[i]) +
                               " of record " + std::to_string(i) + " is out of range for " +
                               std::to_string(meta.num_classes) + " classes (--num-classes)");

  make_parent_dir(out_prefix);
  PackResult result;
  result.records = n;
  result.shards = (n + o.records_per_shard - 1) / o.records_per_shard;
  util::Progress progress(o.progress && o.rank == 0, util::Progress::Style::Lines, stderr, "pack");
  const int64_t pixels = h * w;
  for (int64_t k = o.rank; k < result.shards; k += o.world) {
    ShardWriter writer(shard_path(out_prefix, k, result.shards), meta);
    int64_t end = std::min(n, (k + 1) * o.records_per_shard);
    for (int64_t i = k * o.records_per_shard; i < end; ++i) {
      Record r;
      r.bytes.assign(images.data.begin() + i * pixels, images.data.begin() + (i + 1) * pixels);
      r.height = static_cast<uint32_t>(h);
      r.width = static_cast<uint32_t>(w);
      r.channels = 1;
      r.label = labels.data[i];
      writer.add(std::move(r));
    }
    writer.commit();
    result.written.push_back(shard_path(out_prefix, k, result.shards));
    // Rank 0 sees its own shards only; ranks advance in step, so this estimates the whole.
    progress.count(std::min(n, (k + o.world) * o.records_per_shard), n, "records");
  }
  return result;
}

}  // namespace coatnet::data
