// The alpha-beta model behind `coatnet plan`, against closed forms.
#include <gtest/gtest.h>

#include "dist/plan.h"

using namespace coatnet;

TEST(Plan, RingAllreduceIsTwoNMinusOneHopsAndTwoNMinusOneOverNOfTheBytes) {
  // 2 ranks: 2 latencies and the whole buffer once each way: 2·α + n·8/B.
  EXPECT_DOUBLE_EQ(dist::ring_allreduce_s(1e9, 2, 100, 1e-5), 2 * 1e-5 + 1e9 * 8 / 100e9);
  // 8 ranks: 14 latencies, 14/8 of the bytes.
  EXPECT_DOUBLE_EQ(dist::ring_allreduce_s(1e6, 8, 10, 0), 14.0 / 8 * 1e6 * 8 / 10e9);
  EXPECT_EQ(dist::ring_allreduce_s(1e9, 1, 100, 1e-5), 0);
}

TEST(Plan, BucketsAreTheFirstThenFullOnesThenTheRest) {
  dist::StepModel m;
  m.grad_bytes = 60;
  m.first_bucket_bytes = 5;
  m.bucket_bytes = 20;
  EXPECT_EQ(dist::bucket_sizes(m), (std::vector<double>{5, 20, 20, 15}));
}

TEST(Plan, OneBucketReadyAtTheEndOfBackwardIsAllExposed) {
  // A single bucket is ready only when backward ends: nothing overlaps.
  dist::StepModel m;
  m.grad_bytes = m.first_bucket_bytes = 100e6;
  m.compute_s = 0.1;
  m.gpus_per_node = 1;
  m.link_gbps = 100;
  m.latency_s = 0;
  const dist::PlanPoint p = dist::predict(m, 4);
  const double t = dist::ring_allreduce_s(100e6, 4, 100, 0);
  EXPECT_DOUBLE_EQ(p.exposed_s, t);
  EXPECT_DOUBLE_EQ(p.step_s, 0.1 + t);
  EXPECT_DOUBLE_EQ(p.efficiency, 0.1 / (0.1 + t));
  EXPECT_EQ(p.nodes, 4);
}

TEST(Plan, SmallBucketsOverlapBackwardAndOnlyTheLastIsExposed) {
  // Many small buckets whose all-reduce is faster than backward produces them: each is done
  // before the next is ready, so only the last one's all-reduce sticks out.
  dist::StepModel m;
  m.grad_bytes = 100e6;
  m.first_bucket_bytes = m.bucket_bytes = 1e6;
  m.compute_s = 0.3;  // backward 0.2 s: a bucket every 2 ms
  m.gpus_per_node = 1;
  m.link_gbps = 100;  // 1 MB over 2 ranks: 80 µs
  m.latency_s = 0;
  const dist::PlanPoint p = dist::predict(m, 2);
  EXPECT_NEAR(p.exposed_s, dist::ring_allreduce_s(1e6, 2, 100, 0), 1e-12);
  EXPECT_NEAR(p.allreduce_s, 100 * dist::ring_allreduce_s(1e6, 2, 100, 0), 1e-9);
}

TEST(Plan, EfficiencyFallsWithScaleAndRisesWithBandwidth) {
  dist::StepModel m;
  m.grad_bytes = 100e6;
  m.compute_s = 0.05;
  double last = 1.1;
  for (int gpus : {8, 16, 64, 256, 1024}) {
    const double e = dist::predict(m, gpus).efficiency;
    EXPECT_LE(e, last) << gpus << " GPUs";
    last = e;
  }
  dist::StepModel fast = m;
  fast.link_gbps = 400;
  EXPECT_GT(dist::predict(fast, 64).efficiency, dist::predict(m, 64).efficiency);
  // Within one node the ring runs at NVLink speed.
  EXPECT_EQ(dist::predict(m, 8).nodes, 1);
  EXPECT_GT(dist::predict(m, 8).efficiency, dist::predict(m, 16).efficiency);
}
