// The fused BatchNorm + GELU operation (model/bn_gelu.h) through its reference kernels, on CPU:
// the same outputs, gradients and running statistics as BatchNorm then GELU, in both memory
// formats; batch_norm_act takes it only where it applies; a whole CoAtNet trains alike with it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "model/bn_gelu.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "train/tiny_spec.h"

using namespace coatnet::model;

namespace {

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

// Registers `k` for the scope's life.
struct UseKernels {
  explicit UseKernels(const BnGeluKernels* k) { set_bn_gelu_kernels(k); }
  ~UseKernels() { set_bn_gelu_kernels(nullptr); }
};

torch::nn::BatchNorm2d random_bn(int64_t c) {
  torch::nn::BatchNorm2d bn = make_bn(static_cast<int>(c), 1e-5);
  at::NoGradGuard no_grad;
  bn->weight.copy_(at::rand({c}) + 0.5);
  bn->bias.copy_(at::randn({c}) * 0.5);
  bn->running_mean.copy_(at::randn({c}));
  bn->running_var.copy_(at::rand({c}) + 0.5);
  return bn;
}

}  // namespace

TEST(BnGelu, ReferenceEqualsBatchNormThenGelu) {
  for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    at::manual_seed(5);
    torch::nn::BatchNorm2d fused = random_bn(6), composite = random_bn(6);
    for (size_t i = 0; i < fused->parameters().size(); ++i) {
      at::NoGradGuard no_grad;
      composite->parameters()[i].copy_(fused->parameters()[i]);
    }
    composite->running_mean.copy_(fused->running_mean);
    composite->running_var.copy_(fused->running_var);
    // A mean far from zero and unequal scales per channel: what the algebra must get right.
    at::Tensor x = (at::randn({4, 6, 5, 3}) * at::rand({1, 6, 1, 1}) * 3 + 2).contiguous(format);
    at::Tensor x1 = x.clone().requires_grad_(), x2 = x.clone().requires_grad_();
    at::Tensor dy = at::randn({4, 6, 5, 3}).contiguous(format);
    at::Tensor y1 = bn_gelu(bn_gelu_reference(), *fused, x1);
    at::Tensor y2 = at::gelu(composite->forward(x2));
    (y1 * dy).sum().backward();
    (y2 * dy).sum().backward();
    EXPECT_EQ(y1.suggest_memory_format(), format);
    EXPECT_LE(max_rel_diff(y1, y2), 1e-6);
    EXPECT_LE(max_rel_diff(x1.grad(), x2.grad()), 1e-5);
    EXPECT_LE(max_rel_diff(fused->weight.grad(), composite->weight.grad()), 1e-5);
    EXPECT_LE(max_rel_diff(fused->bias.grad(), composite->bias.grad()), 1e-5);
    EXPECT_LE(max_rel_diff(fused->running_mean, composite->running_mean), 1e-6);
    EXPECT_LE(max_rel_diff(fused->running_var, composite->running_var), 1e-6);
    EXPECT_EQ(fused->num_batches_tracked.item<int64_t>(), 1);
  }
}

// bn_gelu_mean's second output is y's spatial mean, and its gradient reaches x, the weight and
// the bias as it does through spatial_mean (the kernels get it as the per-sample term of dy);
// a mean left unused changes nothing.
TEST(BnGelu, MeanOutputIsTheSpatialMeanWithItsGradient) {
  for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast})
    for (bool mean_used : {true, false}) {
      at::manual_seed(9);
      torch::nn::BatchNorm2d fused = random_bn(6), composite = random_bn(6);
      for (size_t i = 0; i < fused->parameters().size(); ++i) {
        at::NoGradGuard no_grad;
        composite->parameters()[i].copy_(fused->parameters()[i]);
      }
      at::Tensor x = (at::randn({4, 6, 5, 3}) * 2 + 1).contiguous(format);
      at::Tensor x1 = x.clone().requires_grad_(), x2 = x.clone().requires_grad_();
      at::Tensor dy = at::randn({4, 6, 5, 3}).contiguous(format);
      // Large against dy's share of each pixel, so that a term spread wrongly shows.
      at::Tensor dm = at::randn({4, 6, 1, 1}) * 20;
      auto [y1, m1] = bn_gelu_mean(bn_gelu_reference(), *fused, x1);
      at::Tensor y2 = at::gelu(composite->forward(x2));
      at::Tensor m2 = spatial_mean(y2);
      ((y1 * dy).sum() + (mean_used ? (m1 * dm).sum() : at::zeros({}))).backward();
      ((y2 * dy).sum() + (mean_used ? (m2 * dm).sum() : at::zeros({}))).backward();
      const std::string what = std::string(mean_used ? "used" : "unused") +
                               (format == at::MemoryFormat::ChannelsLast ? " NHWC" : " NCHW");
      EXPECT_EQ(m1.sizes(), m2.sizes()) << what;
      EXPECT_LE(max_rel_diff(y1, y2), 1e-6) << what;
      EXPECT_LE(max_rel_diff(m1, m2), 1e-6) << what;
      EXPECT_LE(max_rel_diff(x1.grad(), x2.grad()), 1e-5) << what;
      EXPECT_LE(max_rel_diff(fused->weight.grad(), composite->weight.grad()), 1e-5) << what;
      EXPECT_LE(max_rel_diff(fused->bias.grad(), composite->bias.grad()), 1e-5) << what;
    }
}

TEST(BnGelu, BatchNormActFusesOnlyWhereItApplies) {
  at::manual_seed(6);
  torch::nn::BatchNorm2d bn = random_bn(8);
  at::Tensor x = at::randn({2, 8, 3, 3}, at::requires_grad());
  auto node = [](const at::Tensor& y) { return y.grad_fn() ? y.grad_fn()->name() : ""; };
  const std::string fused = node(bn_gelu(bn_gelu_reference(), *bn, x));
  EXPECT_NE(fused.find("BnGelu"), std::string::npos) << fused;
  EXPECT_EQ(node(batch_norm_act(bn, x, Act::GELU)), "GeluBackward0") << "no kernels registered";
  UseKernels use(&bn_gelu_reference());
  EXPECT_EQ(node(batch_norm_act(bn, x, Act::GELU)), fused);
  EXPECT_NE(node(batch_norm_act(bn, x, Act::SiLU)), fused) << "GELU only";
  bn->eval();
  EXPECT_NE(node(batch_norm_act(bn, x, Act::GELU)), fused) << "training only";
  bn->train();
  set_batch_norm_override(
      [](torch::nn::BatchNorm2dImpl& b, const at::Tensor& t) { return b.forward(t); });
  EXPECT_NE(node(batch_norm_act(bn, x, Act::GELU)), fused) << "SyncBatchNorm keeps its own";
  set_batch_norm_override({});
  // One value per channel: BatchNorm's own error, not a division by zero.
  EXPECT_THROW(batch_norm_act(bn, at::randn({1, 8, 1, 1}), Act::GELU), std::exception);
}

TEST(BnGelu, CoAtNetTrainsAlikeWithTheFusedOperation) {
  ModelSpec spec = coatnet::test::tiny_spec();
  spec.in_chans = 3;
  at::manual_seed(7);
  at::Tensor x = at::randn({4, 3, 32, 32}).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor target = at::randint(0, 10, {4});
  auto run = [&](const BnGeluKernels* k) {
    at::manual_seed(8);
    CoAtNet net(spec);
    net->train();
    UseKernels use(k);
    at::Tensor loss = at::cross_entropy_loss(net->forward(x), target);
    loss.backward();
    std::vector<at::Tensor> out{loss.detach()};
    for (const auto& p : net->parameters()) out.push_back(p.grad().clone());
    for (const auto& b : net->buffers()) out.push_back(b.clone());
    return out;
  };
  const auto composite = run(nullptr), fused = run(&bn_gelu_reference());
  ASSERT_EQ(composite.size(), fused.size());
  EXPECT_LE(max_rel_diff(fused[0], composite[0]), 1e-6) << "loss";
  // Relative to each tensor's largest value, and to the model's largest gradient: a pre-norm's
  // bias feeds a convolution and then another BatchNorm, which removes any constant, so its
  // gradient is zero in exact arithmetic and rounding noise (1e-8) in both runs.
  double largest = 0;
  for (size_t i = 1; i < composite.size(); ++i)
    if (composite[i].is_floating_point())
      largest = std::max(largest, composite[i].abs().max().item<double>());
  for (size_t i = 1; i < fused.size(); ++i) {
    if (!fused[i].is_floating_point()) {
      EXPECT_TRUE(at::equal(fused[i], composite[i])) << "tensor " << i;
      continue;
    }
    const double diff = (fused[i] - composite[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * composite[i].abs().max().item<double>() + 1e-6 * largest)
        << "tensor " << i;
  }
}
