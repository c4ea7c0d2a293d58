#include "data/dataset.h"

#include <glob.h>

#include <algorithm>
#include <stdexcept>

#include "data/hdf5_util.h"

namespace coatnet::data {

std::vector<std::string> expand_globs(const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const auto& p : patterns) {
    glob_t g{};
    int rc = ::glob(p.c_str(), GLOB_ERR, nullptr, &g);
    if (rc != 0) {
      globfree(&g);
      throw std::runtime_error("no files match '" + p +
                               "' (pack the dataset first: coatnet pack --help)");
    }
    std::vector<std::string> found(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

Dataset::Dataset(const std::vector<std::string>& files) {
  if (files.empty()) throw std::runtime_error("a dataset needs at least one shard file");
  starts_.push_back(0);
  for (const auto& f : files) {
    shards_.push_back(std::make_unique<Shard>(f));
    const ShardMeta& a = shards_.front()->meta();
    const ShardMeta& b = shards_.back()->meta();
    if (a.encoding != b.encoding || a.num_classes != b.num_classes ||
        a.multi_label != b.multi_label)
      throw h5::Error(f + ": encoding/num_classes/label kind differ from " + files.front() +
                      " (shards of different datasets mixed?)");
    starts_.push_back(starts_.back() + shards_.back()->size());
  }
}

std::pair<const Shard*, int64_t> Dataset::locate(int64_t i) const {
  if (i < 0 || i >= size())
    throw std::out_of_range("record " + std::to_string(i) + " of a dataset of " +
                            std::to_string(size()));
  auto s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), i) -
                               starts_.begin() - 1);
  return {shards_[s].get(), i - starts_[s]};
}

Record Dataset::read(int64_t i) const {
  auto [shard, j] = locate(i);
  return shard->read(j);
}

}  // namespace coatnet::data
