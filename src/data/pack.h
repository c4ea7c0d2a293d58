// Packing sources into shards, in parallel: with W ranks, rank r writes shards r, r+W, ...;
// shard k always holds records [k·R, (k+1)·R) of the source order, so the files are the same
// whatever the number of ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/shard.h"

namespace coatnet::data {

struct PackOptions {
  int64_t records_per_shard = 1024;
  int64_t num_classes = 0;  // 0: max label + 1
  std::vector<std::string> class_names;
  int rank = 0, world = 1;
  bool progress = true;  // rank 0 prints progress with an ETA to stderr
};

struct PackResult {
  int64_t records = 0;               // in the whole dataset
  int64_t shards = 0;                // in the whole dataset
  std::vector<std::string> written;  // by this rank
};

// MNIST/Fashion-MNIST IDX image + label files -> raw-encoded (uint8 HxWx1) shards.
PackResult pack_idx(const std::string& images, const std::string& labels,
                    const std::string& out_prefix, const PackOptions& options);

}  // namespace coatnet::data
