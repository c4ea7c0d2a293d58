// The depthwise stride-2 convolution with its input gradient from pluggable kernels
// (model/dw_conv.h, src/cuda/dw_conv): the operation through ATen's reference against the
// convolution's own autograd (output, both gradients, under bf16 autocast too, and where it is
// taken); the kernel's thread body emulated on the CPU (every build) and the kernel on the GPU
// against the reference, on odd and even sizes, 16-byte packs and single channels; a CoAtNet step
// with the emulated kernel against one without.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <optional>

#include "cuda/dw_conv.h"
#include "cuda/kernel_checks.h"
#include "model/autograd_graph.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "train/precision.h"
#include "train/tiny_spec.h"

using namespace coatnet;
using test::gpu_unavailable;
using test::graph_has;
using test::max_rel_diff;

namespace {

torch::nn::Conv2d depthwise(int64_t c, int stride = 2) {
  return model::make_conv(static_cast<int>(c), static_cast<int>(c), 3, stride, false,
                          static_cast<int>(c));
}

// `kernels`' input gradient against the reference's, computed from float32 copies of dy and
// the weight (so one rounding of dx is all a 16-bit dtype may differ by).
void expect_matches_reference(const model::DwConvKernels& kernels, const at::Device& device) {
  struct Shape {
    int64_t n, c, h, w;
  };
  // 96 and 24: the 16-byte path for 16-bit dtypes (and float32's); 36: float32's only; 5: neither.
  // Odd sizes have a last row and column with one tap fewer.
  const std::vector<Shape> shapes = {{2, 96, 14, 14}, {3, 24, 9, 7}, {2, 36, 8, 5},
                                     {2, 5, 6, 5},    {1, 24, 3, 3}, {1, 16, 1, 2}};
  const std::vector<std::pair<at::ScalarType, double>> dtypes = {
      {at::kFloat, 1e-5}, {at::kBFloat16, 1e-2}, {at::kHalf, 1e-2}};
  for (const Shape& s : shapes)
    for (const auto& [dtype, tol] : dtypes) {
      at::manual_seed(s.c + s.h);
      const int64_t oh = (s.h - 1) / 2 + 1, ow = (s.w - 1) / 2 + 1;
      const at::Tensor dy = at::randn({s.n, s.c, oh, ow})
                                .to(device, dtype)
                                .contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor weight = at::randn({s.c, 1, 3, 3}).to(device, dtype);
      ASSERT_TRUE(kernels.applies(dy));
      const at::Tensor got = kernels.input_grad(dy, weight, {s.n, s.c, s.h, s.w});
      const at::Tensor ref = model::dw_conv_reference().input_grad(
          dy.to(at::kFloat), weight.to(at::kFloat), {s.n, s.c, s.h, s.w});
      const std::string what =
          c10::toString(dtype) + std::string(" ") + c10::str(at::IntArrayRef{s.n, s.c, s.h, s.w});
      EXPECT_EQ(got.scalar_type(), dtype) << what;
      EXPECT_EQ(got.sizes(), ref.sizes()) << what;
      EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast)) << what;
      EXPECT_LE(max_rel_diff(got, ref), tol) << what;
    }
}

}  // namespace

TEST(DwConv, ReferenceEqualsTheConvolutionAndIsTakenOnlyWhereItApplies) {
  torch::nn::Conv2d c = depthwise(12);
  const at::Tensor cl = at::randn({2, 12, 9, 8}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(model::takes_dw_conv_s2(*c, cl)) << "no kernels registered";
  model::DwConvKernelsScope scope(&model::dw_conv_reference());
  EXPECT_TRUE(model::takes_dw_conv_s2(*c, cl));
  EXPECT_FALSE(model::takes_dw_conv_s2(*c, cl.contiguous())) << "NCHW";
  EXPECT_FALSE(model::takes_dw_conv_s2(*depthwise(12, 1), cl)) << "stride 1";
  EXPECT_FALSE(model::takes_dw_conv_s2(*model::make_conv(12, 12, 3, 2, true, 12), cl)) << "bias";
  EXPECT_FALSE(model::takes_dw_conv_s2(*model::make_conv(12, 12, 3, 2, false, 3), cl))
      << "not depthwise";
  EXPECT_FALSE(model::takes_dw_conv_s2(*model::make_conv(12, 12, 5, 2, false, 12), cl)) << "5x5";
  {
    at::NoGradGuard no_grad;
    EXPECT_FALSE(model::takes_dw_conv_s2(*c, cl)) << "no gradients wanted";
  }
  for (bool bf16 : {false, true}) {
    at::Tensor x1 = cl.clone().requires_grad_(), x2 = cl.clone().requires_grad_();
    const at::Tensor dy = at::randn({2, 12, 5, 4});
    at::Tensor y1, y2;
    {
      std::optional<train::AutocastScope> low;
      if (bf16) low.emplace(at::kCPU, at::kBFloat16);
      y1 = model::conv(c, x1);  // the kernels' path
      EXPECT_TRUE(graph_has(y1, "DwConvS2"));
      y2 = c->forward(x2);
    }
    EXPECT_EQ(y1.scalar_type(), y2.scalar_type()) << "autocast's dtype, as the convolution's";
    EXPECT_LE(max_rel_diff(y1, y2), bf16 ? 1e-2 : 1e-6);
    at::Tensor w1 = (y1.to(at::kFloat) * dy).sum();
    const std::vector<at::Tensor> g1 = torch::autograd::grad({w1}, {x1, c->weight});
    const std::vector<at::Tensor> g2 =
        torch::autograd::grad({(y2.to(at::kFloat) * dy).sum()}, {x2, c->weight});
    EXPECT_EQ(g1[1].scalar_type(), at::kFloat) << "the parameter's own dtype";
    EXPECT_LE(max_rel_diff(g1[0], g2[0]), bf16 ? 1e-2 : 1e-5) << "dx, bf16 " << bf16;
    EXPECT_LE(max_rel_diff(g1[1], g2[1]), bf16 ? 1e-2 : 1e-5) << "dweight, bf16 " << bf16;
  }
}

TEST(DwConvKernel, EmulatedMatchesTheReference) {
  expect_matches_reference(cuda::dw_conv_emulated(), at::kCPU);
  EXPECT_FALSE(cuda::dw_conv_emulated().applies(at::randn({2, 8, 4, 4}))) << "NCHW";
}

TEST(DwConvKernel, MatchesTheReferenceOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  expect_matches_reference(cuda::dw_conv_kernels(), at::Device(at::kCUDA, 0));
  at::Tensor nchw = at::randn({2, 8, 4, 4}, at::TensorOptions().device(at::kCUDA));
  EXPECT_FALSE(cuda::dw_conv_kernels().applies(nchw));
  EXPECT_FALSE(
      cuda::dw_conv_kernels().applies(nchw.cpu().contiguous(at::MemoryFormat::ChannelsLast)));
}

// A CoAtNet step (its MBConv blocks' first, stride-2 depthwise convolutions) with the emulated
// kernel's input gradient: the loss and every gradient as without it.
TEST(DwConvKernel, CoAtNetStepWithTheEmulatedKernelMatches) {
  model::ModelSpec spec = test::tiny_spec();
  spec.in_chans = 3;
  at::manual_seed(7);
  const at::Tensor x = at::randn({4, 3, 32, 32}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor target = at::randint(0, 10, {4});
  auto step = [&](const model::DwConvKernels* k) {
    std::optional<model::DwConvKernelsScope> scope;
    if (k) scope.emplace(k);
    at::manual_seed(8);
    model::CoAtNet net(spec);
    net->train();
    at::Tensor loss = at::cross_entropy_loss(net->forward(x), target);
    EXPECT_EQ(graph_has(loss, "DwConvS2"), k != nullptr);
    loss.backward();
    std::vector<at::Tensor> out{loss.detach()};
    for (const auto& p : net->parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const auto plain = step(nullptr), emulated = step(&cuda::dw_conv_emulated());
  ASSERT_EQ(plain.size(), emulated.size());
  double largest = 0;
  for (size_t i = 1; i < plain.size(); ++i)
    largest = std::max(largest, plain[i].abs().max().item<double>());
  EXPECT_LE(max_rel_diff(emulated[0], plain[0]), 1e-6) << "loss";
  for (size_t i = 1; i < plain.size(); ++i) {
    const double diff = (emulated[i] - plain[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * plain[i].abs().max().item<double>() + 1e-6 * largest)
        << "gradient " << i;
  }
}
