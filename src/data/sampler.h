// Deterministic, resumable, world-size-independent sampling (docs/ARCHITECTURE.md "Data format").
//
// The order of epoch e is a permutation of the dataset keyed by (seed, e). Global batch i is
// positions [i·G, (i+1)·G) of that order and rank r takes its contiguous slice of G/W. So the
// global batches do not depend on the world size, and the sampler's whole state is
// (epoch, samples consumed): resume is exact, also at another world size with the same G.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util/keyed_random.h"

namespace coatnet::data {

// Full: a uniform random permutation held in memory (8 bytes a sample; 10 MB for ImageNet).
// Block: for corpora too large to permute in memory (JFT-3B scale): contiguous blocks of
//   `block_size` samples are permuted, then groups of `group_blocks` blocks are interleaved by
//   a keyed bijection (Feistel network), so every batch mixes many blocks. Memory grows with
//   the number of blocks, not samples; reads stay within a few blocks (shards) at a time.
enum class OrderPolicy { Full, Block };

class SampleOrder {
 public:
  SampleOrder(int64_t n, uint64_t seed, int64_t epoch, OrderPolicy policy,
              int64_t block_size = 1 << 16, int64_t group_blocks = 16);
  int64_t size() const { return n_; }
  int64_t at(int64_t position) const;  // sample index at this position of the epoch

 private:
  int64_t n_, block_size_, group_blocks_;
  uint64_t key_;
  OrderPolicy policy_;
  std::vector<int64_t> full_;          // Full
  std::vector<int64_t> blocks_;        // Block: permuted block ids
  std::vector<int64_t> group_starts_;  // Block: first position of each group (+ n at the end)
};

struct SamplerState {
  int64_t epoch = 0;
  int64_t consumed = 0;  // samples of this epoch already handed out, over all ranks
};

struct SamplerOptions {
  int64_t num_samples = 0;
  int64_t global_batch = 1;
  int rank = 0, world = 1;
  uint64_t seed = 0;
  bool shuffle = true;    // false: dataset order (evaluation)
  bool drop_last = true;  // false: pad the last batch with -1 (masked) so every sample counts once
  OrderPolicy policy = OrderPolicy::Full;
  int64_t block_size = 1 << 16;
};

class DistributedSampler {
 public:
  explicit DistributedSampler(SamplerOptions options);  // throws std::invalid_argument
  int64_t batches_per_epoch() const;
  int64_t local_batch() const { return opt_.global_batch / opt_.world; }
  // This rank's slice of the next global batch; -1 marks padding. Moves to the next epoch
  // after the last batch of one.
  std::vector<int64_t> next();
  SamplerState state() const { return state_; }
  void restore(SamplerState s);  // throws std::invalid_argument for an impossible state

 private:
  const SampleOrder& order();
  SamplerOptions opt_;
  SamplerState state_;
  std::unique_ptr<SampleOrder> order_;
  int64_t order_epoch_ = -1;
};

}  // namespace coatnet::data
