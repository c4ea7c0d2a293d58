// A dataset = one or more shard files, indexed as one sequence of records (shards in name
// order). All shards must agree on encoding, classes and label kind.
//
//   Dataset ds(expand_globs({"data/fashion-mnist/train-*.h5"}));
//   Record r = ds.read(123);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/shard.h"

namespace coatnet::data {

// Expands shell globs (sorted); a pattern matching nothing is an error naming it.
std::vector<std::string> expand_globs(const std::vector<std::string>& patterns);

class Dataset {
 public:
  explicit Dataset(const std::vector<std::string>& files);
  int64_t size() const { return starts_.back(); }
  const ShardMeta& meta() const { return shards_.front()->meta(); }
  const std::vector<std::unique_ptr<Shard>>& shards() const { return shards_; }
  // (shard, index within it) of global record i.
  std::pair<const Shard*, int64_t> locate(int64_t i) const;
  Record read(int64_t i) const;

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int64_t> starts_;  // first global index of each shard, then the total
};

}  // namespace coatnet::data
