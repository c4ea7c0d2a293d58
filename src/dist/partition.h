// ZeRO-1's ownership of a flat buffer (train/zero.h): rank r of W owns the contiguous range
// [r·shard, (r+1)·shard), the same size on every rank (the buffer is padded to W·shard
// elements). One owner of everything is the unsharded case. Header-only.
//
//   Partition p = Partition::even(flat.numel(), rank, world);
//   comm.reduce_scatter_async(bucket, owned.narrow(0, p.owned_offset(b), p.counts(b, e)[rank]),
//                             p.counts(b, e), "...");
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::dist {

struct Partition {
  int rank = 0, world = 1;
  int64_t shard = 0;  // elements per rank
  int64_t begin() const { return rank * shard; }
  int64_t end() const { return begin() + shard; }
  bool sharded() const { return world > 1; }

  // n elements in `world` equal shards; n must divide evenly (pad the buffer first).
  static Partition even(int64_t n, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world || n % world != 0)
      throw std::invalid_argument("Partition: " + std::to_string(n) +
                                  " elements do not split into " + std::to_string(world) +
                                  " equal shards (rank " + std::to_string(rank) +
                                  "): the flat buffers must be padded for the world size");
    return Partition{rank, world, n / world};
  }
  // For a reduce-scatter of range [b, e): the elements of it each rank owns, in rank order (they
  // add up to e - b; most are 0 for a bucket smaller than a shard).
  std::vector<int64_t> counts(int64_t b, int64_t e) const {
    std::vector<int64_t> out(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      const int64_t lo = std::max(b, r * shard), hi = std::min(e, (r + 1) * shard);
      out[static_cast<size_t>(r)] = std::max<int64_t>(0, hi - lo);
    }
    return out;
  }
  // Where this rank's part of a range starting at flat offset b lies inside its shard.
  int64_t owned_offset(int64_t b) const { return std::clamp<int64_t>(b - begin(), 0, shard); }
};

}  // namespace coatnet::dist
