// Mixup/CutMix: the mixing formula, label mixing, CutMix's area-corrected λ, determinism.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/math/special_functions/beta.hpp>
#include <cmath>
#include <vector>

#include "data/mixup.h"

using namespace coatnet::data;

TEST(Mixup, OffLeavesImagesAndGivesSmoothedOneHot) {
  at::Tensor x = at::randn({4, 3, 8, 8}), orig = x.clone();
  MixOptions o;
  o.num_classes = 5;
  o.label_smoothing = 0.1;
  at::Tensor y = mix_batch(x, at::tensor({0, 4, 2, -1}, at::kLong), o, 0, 0);
  EXPECT_TRUE(at::equal(x, orig));
  EXPECT_NEAR(y[0][0].item<float>(), 0.9 + 0.02, 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 0.02, 1e-6);
  EXPECT_NEAR(y[3].sum().item<float>(), 0.1, 1e-6)
      << "an invalid row keeps only the smoothing mass";
}

TEST(Mixup, MixupMixesImagesAndLabelsWithTheSameLambda) {
  at::Tensor x = at::randn({6, 3, 8, 8}), orig = x.clone();
  MixOptions o;
  o.mixup_alpha = 0.8;
  o.num_classes = 10;
  MixInfo m;
  at::Tensor t = at::tensor({1, 2, 3, 4, 5, 6}, at::kLong);
  at::Tensor y = mix_batch(x, t, o, 3, 7, &m);
  EXPECT_FALSE(m.cutmix);
  EXPECT_GT(m.lam, 0.0);
  EXPECT_LT(m.lam, 1.0);
  const at::Tensor partner = orig.view({3, 2, 3, 8, 8}).flip(1).reshape({6, 3, 8, 8});
  EXPECT_TRUE(at::allclose(x, orig * m.lam + partner * (1 - m.lam), 1e-5, 1e-6));
  EXPECT_NEAR(y[0][1].item<float>(), m.lam, 1e-6);
  EXPECT_NEAR(y[0][2].item<float>(), 1 - m.lam, 1e-6);  // row 1's class
  EXPECT_TRUE(at::allclose(y.sum(1), at::ones({6})));
  // The same key gives the same mix; another step a different one.
  at::Tensor x2 = orig.clone();
  MixInfo m2, m3;
  mix_batch(x2, t, o, 3, 7, &m2);
  EXPECT_EQ(m.lam, m2.lam);
  at::Tensor x3 = orig.clone();
  mix_batch(x3, t, o, 3, 8, &m3);
  EXPECT_NE(m.lam, m3.lam);
}

TEST(Mixup, PartnersAreNeighboursAndAnOddLastRowItself) {
  // Made on the rows' device (no index copied from the host, which would wait for a GPU).
  const at::Tensor rows = at::arange(5, at::kFloat).unsqueeze(1);
  EXPECT_TRUE(at::equal(partners_of(rows).squeeze(1), at::tensor({1.f, 0.f, 3.f, 2.f, 4.f})));
  EXPECT_TRUE(
      at::equal(partners_of(rows.narrow(0, 0, 4)).squeeze(1), at::tensor({1.f, 0.f, 3.f, 2.f})));
}

TEST(Mixup, CutMixPastesABoxAndUsesItsArea) {
  at::Tensor x = at::zeros({2, 1, 32, 32});
  x[1].fill_(1.0);
  MixOptions o;
  o.cutmix_alpha = 1.0;
  o.num_classes = 2;
  for (int step = 0; step < 20; ++step) {
    at::Tensor img = x.clone();
    MixInfo m;
    at::Tensor y = mix_batch(img, at::tensor({0, 1}, at::kLong), o, 0, step, &m);
    ASSERT_TRUE(m.cutmix);
    double pasted = img[0].sum().item<double>() / (32.0 * 32.0);  // ones pasted into image 0
    EXPECT_NEAR(1.0 - pasted, m.lam, 1e-9) << step;
    EXPECT_NEAR(y[0][0].item<float>(), m.lam, 1e-6);
  }
}

TEST(Mixup, MultiLabelTargetsMixToo) {
  at::Tensor x = at::randn({2, 3, 4, 4});
  MixOptions o;
  o.mixup_alpha = 1.0;
  o.num_classes = 4;
  at::Tensor t = at::tensor({1.f, 0.f, 1.f, 0.f, 0.f, 1.f, 0.f, 0.f}).view({2, 4});
  MixInfo m;
  at::Tensor y = mix_batch(x, t, o, 0, 1, &m);
  EXPECT_NEAR(y[0][0].item<float>(), m.lam, 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 1 - m.lam, 1e-6);
}

namespace {

// The Kolmogorov–Smirnov statistic of `samples` against the Beta(a, a) distribution.
double ks_distance(std::vector<double> samples, double a) {
  std::sort(samples.begin(), samples.end());
  const double n = static_cast<double>(samples.size());
  double d = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const double f = boost::math::ibeta(a, a, samples[i]);
    d = std::max({d, f - i / n, (i + 1) / n - f});
  }
  return d;
}

}  // namespace

// λ ~ Beta(α, α) in distribution, not only in mean (a symmetric Beta has mean 0.5 for every α,
// so a mean test cannot see a wrong α). 4000 keyed draws per α; the KS critical value at
// significance 0.001 is 1.95/√n = 0.031. The draws are keyed, so the test is deterministic.
TEST(Mixup, BetaSamplesFollowTheBetaDistributionOfTheirAlpha) {
  constexpr int n = 4000;
  const double critical = 1.95 / std::sqrt(static_cast<double>(n));
  for (double alpha : {0.2, 0.8, 1.0, 2.0}) {
    std::vector<double> draws;
    for (uint64_t k = 0; k < n; ++k) draws.push_back(keyed_beta(alpha, k * 7919 + 1));
    const double d = ks_distance(draws, alpha);
    EXPECT_LT(d, critical) << "Beta(" << alpha << ") draws: KS distance " << d;
    // The test's power: the same draws are far from Beta(α/2) and Beta(2α).
    EXPECT_GT(ks_distance(draws, alpha / 2), 2 * critical) << "alpha " << alpha;
    EXPECT_GT(ks_distance(draws, alpha * 2), 2 * critical) << "alpha " << alpha;
  }
}
