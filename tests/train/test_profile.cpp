// The profile's summary from kernel spans: busy time is the union of the spans (two streams'
// overlapping kernels count once), kernels are grouped by name and sorted by total time, and
// every figure is per step.
#include <gtest/gtest.h>

#include "train/profile.h"

using coatnet::train::KernelSpan;
using coatnet::train::profile_summary;

TEST(ProfileSummary, BusyTimeIsTheUnionOfOverlappingKernels) {
  // Two steps over 10 ms of wall time: kernels busy over [0,3) and [4,6) ms (the second and
  // third overlap on two streams; the fourth lies inside the third).
  const uint64_t ms = 1000000;
  std::vector<KernelSpan> k = {{"gemm", 4 * ms, 5 * ms},
                               {"bn", 0, 2 * ms},
                               {"gelu", 1 * ms, 3 * ms},
                               {"bn", 4 * ms, 6 * ms},
                               {"gemm", 5 * ms, 5 * ms + ms / 2}};
  const auto s = profile_summary(k, 2, 0.010);
  EXPECT_EQ(s["steps"].get<int64_t>(), 2);
  EXPECT_NEAR(s["wall_ms_per_step"].get<double>(), 5.0, 1e-9);
  EXPECT_NEAR(s["busy_ms_per_step"].get<double>(), 2.5, 1e-9);  // 5 ms busy over 2 steps
  EXPECT_NEAR(s["busy_share"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(s["kernels_per_step"].get<double>(), 2.5, 1e-9);
  const auto& top = s["top"];
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0]["name"], "bn");  // 4 ms in all, longest first
  EXPECT_NEAR(top[0]["ms_per_step"].get<double>(), 2.0, 1e-9);
  EXPECT_NEAR(top[0]["calls_per_step"].get<double>(), 1.0, 1e-9);
  EXPECT_NEAR(top[0]["share_of_busy"].get<double>(), 0.8, 1e-9);
  EXPECT_EQ(top[1]["name"], "gelu");
  EXPECT_EQ(top[2]["name"], "gemm");
  EXPECT_NEAR(top[2]["ms_per_step"].get<double>(), 0.75, 1e-9);
}

TEST(ProfileSummary, KeepsTheLongestKernelsOnly) {
  std::vector<KernelSpan> k;
  for (int i = 0; i < 5; ++i)
    k.push_back({"k" + std::to_string(i), static_cast<uint64_t>(i) * 100,
                 static_cast<uint64_t>(i) * 100 + 10 * (i + 1)});
  const auto s = profile_summary(k, 1, 1.0, 2);
  ASSERT_EQ(s["top"].size(), 2u);
  EXPECT_EQ(s["top"][0]["name"], "k4");
  EXPECT_EQ(s["top"][1]["name"], "k3");
  EXPECT_NEAR(s["busy_ms_per_step"].get<double>(), 150e-6, 1e-12);
}

TEST(ProfileSummary, NoKernelsIsAnEmptyProfile) {
  const auto s = profile_summary({}, 3, 0.3);
  EXPECT_EQ(s["busy_ms_per_step"].get<double>(), 0.0);
  EXPECT_EQ(s["busy_share"].get<double>(), 0.0);
  EXPECT_TRUE(s["top"].empty());
}
