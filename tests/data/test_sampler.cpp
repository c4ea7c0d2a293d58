// Sampling: every sample once per epoch over all ranks, the same global batches at any world
// size, exact resume (also at another world size), evaluation counting each sample once.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "data/sampler.h"

using namespace coatnet::data;

namespace {

SamplerOptions opts(int64_t n, int64_t g, int rank, int world,
                    OrderPolicy policy = OrderPolicy::Full) {
  SamplerOptions o;
  o.num_samples = n;
  o.global_batch = g;
  o.rank = rank;
  o.world = world;
  o.seed = 1234;
  o.policy = policy;
  o.block_size = 7;  // small blocks so the block policy is exercised on small data
  return o;
}

// The global batches of `steps` steps, assembled from every rank's slices in rank order.
std::vector<std::vector<int64_t>> global_batches(SamplerOptions o, int world, int steps,
                                                 SamplerState start = {}) {
  std::vector<DistributedSampler> ranks;
  for (int r = 0; r < world; ++r) {
    o.rank = r;
    o.world = world;
    ranks.emplace_back(o);
    ranks.back().restore(start);
  }
  std::vector<std::vector<int64_t>> out;
  for (int s = 0; s < steps; ++s) {
    std::vector<int64_t> batch;
    for (auto& r : ranks) {
      auto part = r.next();
      batch.insert(batch.end(), part.begin(), part.end());
    }
    out.push_back(batch);
  }
  return out;
}

}  // namespace

TEST(Sampler, OrderIsAPermutationForBothPolicies) {
  for (auto policy : {OrderPolicy::Full, OrderPolicy::Block}) {
    for (int64_t n : {1, 2, 7, 50, 1000, 4097}) {
      SampleOrder order(n, 9, 3, policy, 64, 4);
      std::vector<int64_t> seen(n, 0);
      for (int64_t p = 0; p < n; ++p) ++seen[order.at(p)];
      EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int64_t c) { return c == 1; }))
          << "n=" << n << " policy " << static_cast<int>(policy);
    }
  }
}

TEST(Sampler, OrderDependsOnSeedAndEpochOnly) {
  SampleOrder a(1000, 1, 0, OrderPolicy::Full), b(1000, 1, 0, OrderPolicy::Full);
  SampleOrder c(1000, 1, 1, OrderPolicy::Full), d(1000, 2, 0, OrderPolicy::Full);
  int same_c = 0, same_d = 0;
  for (int p = 0; p < 1000; ++p) {
    EXPECT_EQ(a.at(p), b.at(p));
    same_c += a.at(p) == c.at(p);
    same_d += a.at(p) == d.at(p);
  }
  EXPECT_LT(same_c, 20);
  EXPECT_LT(same_d, 20);
}

TEST(Sampler, BlockPolicyMixesBlocksWithinABatch) {
  // A batch of 64 from blocks of 1000 samples with 16-block groups draws from many blocks.
  SampleOrder order(100000, 5, 0, OrderPolicy::Block, 1000, 16);
  std::set<int64_t> blocks;
  for (int p = 0; p < 64; ++p) blocks.insert(order.at(p) / 1000);
  EXPECT_GE(blocks.size(), 10u);
}

TEST(Sampler, EachSampleOncePerEpochOverAllRanks) {
  for (auto policy : {OrderPolicy::Full, OrderPolicy::Block}) {
    for (int world : {1, 2, 3, 4}) {
      auto batches = global_batches(opts(120, 12, 0, world, policy), world, 10);
      std::vector<int> seen(120, 0);
      for (const auto& b : batches)
        for (int64_t i : b) ++seen[i];
      EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }))
          << "world " << world;
    }
  }
}

TEST(Sampler, GlobalBatchesDoNotDependOnWorldSize) {
  for (auto policy : {OrderPolicy::Full, OrderPolicy::Block}) {
    auto ref = global_batches(opts(100, 12, 0, 1, policy), 1, 20);  // crosses an epoch
    for (int world : {2, 3, 4})
      EXPECT_EQ(global_batches(opts(100, 12, 0, world, policy), world, 20), ref) << world;
  }
}

TEST(Sampler, DropLastDropsOnlyThePartialBatch) {
  DistributedSampler s(opts(100, 12, 0, 1));
  EXPECT_EQ(s.batches_per_epoch(), 8);
  for (int i = 0; i < 8; ++i) s.next();
  EXPECT_EQ(s.state().epoch, 0);
  s.next();
  EXPECT_EQ(s.state().epoch, 1);
  EXPECT_EQ(s.state().consumed, 12);
}

TEST(Sampler, ResumeEqualsTheUninterruptedStreamAtAnyWorldSize) {
  auto straight = global_batches(opts(100, 12, 0, 2), 2, 25);
  for (int k : {0, 3, 8, 13}) {
    DistributedSampler probe(opts(100, 12, 0, 1));
    for (int i = 0; i < k; ++i) probe.next();
    SamplerState saved = probe.state();
    for (int world : {1, 2, 3, 4}) {
      auto resumed = global_batches(opts(100, 12, 0, world), world, 25 - k, saved);
      EXPECT_EQ(resumed, std::vector<std::vector<int64_t>>(straight.begin() + k, straight.end()))
          << "resume after " << k << " at world " << world;
    }
  }
}

TEST(Sampler, EvaluationCountsEverySampleOnce) {
  for (int world : {1, 2, 3}) {
    SamplerOptions o = opts(101, 12, 0, world);  // 101 is divisible by none of 12, 2, 3
    o.shuffle = false;
    o.drop_last = false;
    auto batches = global_batches(o, world, DistributedSampler(o).batches_per_epoch());
    std::vector<int> seen(101, 0);
    int padding = 0;
    for (const auto& b : batches)
      for (int64_t i : b) i < 0 ? ++padding : ++seen[i];
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; })) << world;
    EXPECT_EQ(padding, 9 * 12 - 101);
  }
}

TEST(Sampler, ImpossibleSettingsAreClearErrors) {
  try {
    DistributedSampler(opts(100, 10, 0, 3));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("data.batch_size 10 is not divisible by the world size 3"),
              std::string::npos);
  }
  EXPECT_THROW(DistributedSampler(opts(5, 10, 0, 1)), std::invalid_argument);
  DistributedSampler s(opts(100, 10, 0, 1));
  EXPECT_THROW(s.restore({0, 15}), std::invalid_argument);  // not a batch boundary
  EXPECT_THROW(s.restore({0, 110}), std::invalid_argument);
}
