#include "data/sampler.h"

#include <algorithm>
#include <stdexcept>

namespace coatnet::data {

namespace {

std::vector<int64_t> shuffled(int64_t n, uint64_t key) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  KeyedRandom rng(key);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[rng.below(i + 1)]);
  return v;
}

// A keyed bijection on [0, m): a 4-round Feistel network on the smallest even bit width that
// covers m, walking the cycle until the value falls inside [0, m).
int64_t feistel(int64_t x, int64_t m, uint64_t key) {
  if (m <= 1) return 0;
  int bits = 2;
  while ((int64_t{1} << bits) < m) bits += 2;
  const int half = bits / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t v = static_cast<uint64_t>(x);
  do {
    uint64_t left = v >> half, right = v & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      uint64_t f = mix64(right ^ key ^ (round << 56)) & mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    v = (left << half) | right;
  } while (v >= static_cast<uint64_t>(m));
  return static_cast<int64_t>(v);
}

}  // namespace

SampleOrder::SampleOrder(int64_t n, uint64_t seed, int64_t epoch, OrderPolicy policy,
                         int64_t block_size, int64_t group_blocks)
    : n_(n),
      block_size_(std::max<int64_t>(1, block_size)),
      group_blocks_(std::max<int64_t>(1, group_blocks)),
      key_(key_of(seed, static_cast<uint64_t>(epoch), 0x5a3b1e)),
      policy_(policy) {
  if (policy_ == OrderPolicy::Full) {
    full_ = shuffled(n, key_);
    return;
  }
  int64_t num_blocks = (n + block_size_ - 1) / block_size_;
  blocks_ = shuffled(num_blocks, key_);
  int64_t pos = 0;
  for (int64_t b = 0; b < num_blocks; ++b) {
    if (b % group_blocks_ == 0) group_starts_.push_back(pos);
    pos += std::min(block_size_, n - blocks_[b] * block_size_);
  }
  group_starts_.push_back(n);
}

int64_t SampleOrder::at(int64_t p) const {
  if (policy_ == OrderPolicy::Full) return full_[p];
  auto g = static_cast<int64_t>(std::upper_bound(group_starts_.begin(), group_starts_.end(), p) -
                                group_starts_.begin() - 1);
  int64_t start = group_starts_[g], size = group_starts_[g + 1] - start;
  int64_t j = feistel(p - start, size, key_of(key_, static_cast<uint64_t>(g)));
  for (int64_t b = g * group_blocks_;; ++b) {
    int64_t id = blocks_[b];
    int64_t len = std::min(block_size_, n_ - id * block_size_);
    if (j < len) return id * block_size_ + j;
    j -= len;
  }
}

DistributedSampler::DistributedSampler(SamplerOptions o) : opt_(o) {
  auto bad = [](const std::string& m) { throw std::invalid_argument(m); };
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world)
    bad("rank " + std::to_string(o.rank) + " of world size " + std::to_string(o.world));
  if (o.global_batch < 1) bad("global batch " + std::to_string(o.global_batch));
  if (o.global_batch % o.world != 0)
    bad("data.batch_size " + std::to_string(o.global_batch) +
        " is not divisible by the world size " + std::to_string(o.world) +
        "; choose a multiple of " + std::to_string(o.world));
  if (o.num_samples < 1) bad("the dataset has no samples");
  if (o.drop_last && o.num_samples < o.global_batch)
    bad("the dataset has " + std::to_string(o.num_samples) +
        " samples, fewer than one global batch of " + std::to_string(o.global_batch));
}

int64_t DistributedSampler::batches_per_epoch() const {
  const int64_t n = opt_.num_samples, g = opt_.global_batch;
  return opt_.drop_last ? n / g : (n + g - 1) / g;
}

const SampleOrder& DistributedSampler::order() {
  if (!order_ || order_->size() != opt_.num_samples || order_epoch_ != state_.epoch) {
    order_ = std::make_unique<SampleOrder>(opt_.num_samples, opt_.seed, state_.epoch, opt_.policy,
                                           opt_.block_size);
    order_epoch_ = state_.epoch;
  }
  return *order_;
}

std::vector<int64_t> DistributedSampler::next() {
  if (state_.consumed >= batches_per_epoch() * opt_.global_batch) {
    ++state_.epoch;
    state_.consumed = 0;
  }
  const int64_t local = local_batch();
  const int64_t first = state_.consumed + opt_.rank * local;
  std::vector<int64_t> out(local);
  const SampleOrder* ord = opt_.shuffle ? &order() : nullptr;
  for (int64_t k = 0; k < local; ++k) {
    int64_t p = first + k;
    out[k] = p >= opt_.num_samples ? -1 : (ord ? ord->at(p) : p);
  }
  state_.consumed += opt_.global_batch;
  return out;
}

void DistributedSampler::restore(SamplerState s) {
  if (s.epoch < 0 || s.consumed < 0 || s.consumed % opt_.global_batch != 0 ||
      s.consumed > batches_per_epoch() * opt_.global_batch)
    throw std::invalid_argument("sampler state (epoch " + std::to_string(s.epoch) + ", consumed " +
                                std::to_string(s.consumed) + ") does not fit global batch " +
                                std::to_string(opt_.global_batch) + " and " +
                                std::to_string(opt_.num_samples) +
                                " samples: resume needs the same data.batch_size and dataset");
  state_ = s;
}

}  // namespace coatnet::data
