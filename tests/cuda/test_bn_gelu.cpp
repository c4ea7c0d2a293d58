// src/cuda/bn_gelu against the reference kernels of model/bn_gelu.h: its thread bodies emulated
// on the CPU (every build) and its kernels on the GPU. Outputs, the three gradients and the
// running statistics, for float32 (tight) and bfloat16/float16 (one
// rounding of the output: about 1e-2 relative), on channel counts that take the 16-byte path and
// ones that do not, with and without the spatial mean's gradient (bn_gelu_mean), and one CoAtNet
// training step with and without the kernels.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>

#include "cuda/batch_prep.h"
#include "cuda/bn_gelu.h"
#include "cuda/kernel_checks.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "train/tiny_spec.h"

using namespace coatnet;
using test::gpu_unavailable;
using test::max_rel_diff;

namespace {

struct Outputs {
  at::Tensor y, dx, dweight, dbias, running_mean, running_var;
};

// One forward + backward; with dm defined, through bn_gelu_mean with dm as its mean's gradient
// (the kernels' per-sample term of dy).
Outputs run(const model::BnGeluKernels& k, const at::Tensor& x, const at::Tensor& dy,
            const at::Tensor& dm = {}) {
  torch::nn::BatchNorm2d bn = model::make_bn(static_cast<int>(x.size(1)), 1e-5);
  const int64_t c = x.size(1);
  {
    at::NoGradGuard no_grad;
    at::manual_seed(21);
    bn->weight.copy_(at::rand({c}) + 0.5);
    bn->bias.copy_(at::randn({c}) * 0.5);
    bn->running_var.fill_(2.0);
  }
  bn->to(x.device());
  at::Tensor xg = x.clone().requires_grad_();
  if (!dm.defined()) {
    at::Tensor y = model::bn_gelu(k, *bn, xg);
    (y.to(at::kFloat) * dy).sum().backward();
    return {y, xg.grad(), bn->weight.grad(), bn->bias.grad(), bn->running_mean, bn->running_var};
  }
  auto [y, m] = model::bn_gelu_mean(k, *bn, xg);
  ((y.to(at::kFloat) * dy).sum() + (m.to(at::kFloat) * dm).sum()).backward();
  return {y, xg.grad(), bn->weight.grad(), bn->bias.grad(), bn->running_mean, bn->running_var};
}

// `kernels` against the reference on `device`, over shapes and dtypes.
void expect_matches_reference(const model::BnGeluKernels& kernels, const at::Device& device) {
  struct Shape {
    int64_t n, c, h, w;
  };
  // 96 and 384: the 16-byte path for every dtype; 36: float32's only; 100 and 5: neither.
  const std::vector<Shape> shapes = {
      {8, 96, 14, 14}, {3, 36, 7, 5}, {2, 100, 9, 9}, {4, 5, 3, 3}, {16, 384, 28, 28}};
  const std::vector<std::pair<at::ScalarType, double>> dtypes = {
      {at::kFloat, 1e-5}, {at::kBFloat16, 1e-2}, {at::kHalf, 1e-2}};
  for (const Shape& s : shapes)
    for (const auto& [dtype, tol] : dtypes) {
      at::manual_seed(s.c);
      at::Tensor x = (at::randn({s.n, s.c, s.h, s.w}) * 2 + 1)
                         .to(device, dtype)
                         .contiguous(at::MemoryFormat::ChannelsLast);
      at::Tensor dy = at::randn({s.n, s.c, s.h, s.w}, x.options().dtype(at::kFloat))
                          .contiguous(at::MemoryFormat::ChannelsLast);
      ASSERT_TRUE(kernels.applies(x));
      // The mean's gradient, per sample and channel: its share of a pixel as large as dy, so
      // that a pixel given another sample's term (a lane that crosses into the next one) shows.
      at::Tensor dm = at::randn({s.n, s.c, 1, 1}, x.options().dtype(at::kFloat)) * (s.h * s.w);
      for (bool with_mean : {false, true}) {
        const at::Tensor m = with_mean ? dm : at::Tensor();
        const Outputs got = run(kernels, x, dy, m);
        const Outputs ref = run(model::bn_gelu_reference(), x, dy, m);
        const std::string what = c10::toString(dtype) + std::string(" C=") + std::to_string(s.c) +
                                 (with_mean ? " with the mean" : "");
        EXPECT_EQ(got.y.scalar_type(), dtype) << what;
        EXPECT_TRUE(got.y.is_contiguous(at::MemoryFormat::ChannelsLast)) << what;
        EXPECT_TRUE(got.dx.is_contiguous(at::MemoryFormat::ChannelsLast)) << what;
        EXPECT_LE(max_rel_diff(got.y, ref.y), tol) << what << " y";
        EXPECT_LE(max_rel_diff(got.dx, ref.dx), tol) << what << " dx";
        // Sums over float32 values of dz in both: only their order differs.
        EXPECT_LE(max_rel_diff(got.dweight, ref.dweight), 1e-4) << what << " dweight";
        EXPECT_LE(max_rel_diff(got.dbias, ref.dbias), 1e-4) << what << " dbias";
        EXPECT_LE(max_rel_diff(got.running_mean, ref.running_mean), 1e-5) << what;
        EXPECT_LE(max_rel_diff(got.running_var, ref.running_var), 1e-5) << what;
      }
    }
}

}  // namespace

// The kernels' thread bodies and launch geometry, run serially on the CPU: every build.
TEST(BnGeluKernel, EmulatedBlocksMatchTheReference) {
  expect_matches_reference(cuda::bn_gelu_emulated(), at::kCPU);
  EXPECT_FALSE(cuda::bn_gelu_emulated().applies(at::randn({2, 8, 4, 4})))
      << "NCHW is the composite's";
}

TEST(BnGeluKernel, MatchesTheReferenceOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const at::Device gpu(at::kCUDA, 0);
  expect_matches_reference(cuda::bn_gelu_kernels(), gpu);
  // Not taken: NCHW, CPU, float64.
  at::Tensor nchw = at::randn({2, 8, 4, 4}, at::TensorOptions().device(gpu));
  EXPECT_FALSE(cuda::bn_gelu_kernels().applies(nchw));
  EXPECT_FALSE(
      cuda::bn_gelu_kernels().applies(nchw.cpu().contiguous(at::MemoryFormat::ChannelsLast)));
  EXPECT_FALSE(cuda::bn_gelu_kernels().applies(
      nchw.to(at::kDouble).contiguous(at::MemoryFormat::ChannelsLast)));
}

TEST(BnGeluKernel, RunsAreBitIdentical) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  at::manual_seed(3);
  at::Tensor x = at::randn({32, 192, 28, 28}, at::TensorOptions().device(at::kCUDA))
                     .to(at::kBFloat16)
                     .contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor dy = at::randn_like(x, at::kFloat);
  const Outputs a = run(cuda::bn_gelu_kernels(), x, dy), b = run(cuda::bn_gelu_kernels(), x, dy);
  EXPECT_TRUE(at::equal(a.dx, b.dx));
  EXPECT_TRUE(at::equal(a.dweight, b.dweight));
  EXPECT_TRUE(at::equal(a.dbias, b.dbias));
}

TEST(BnGeluKernel, CoAtNetStepMatchesTheCompositeOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  model::ModelSpec spec = test::tiny_spec();
  spec.in_chans = 3;
  at::manual_seed(7);
  const at::TensorOptions gpu = at::TensorOptions().device(at::kCUDA);
  at::Tensor x = at::randn({8, 3, 32, 32}, gpu).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor target = at::randint(0, 10, {8}, gpu.dtype(at::kLong));
  auto step = [&](const model::BnGeluKernels* k) {
    at::manual_seed(8);
    model::CoAtNet net(spec);
    net->to(at::kCUDA);
    net->train();
    model::set_bn_gelu_kernels(k);
    at::Tensor loss = at::cross_entropy_loss(net->forward(x), target);
    loss.backward();
    model::set_bn_gelu_kernels(nullptr);
    std::vector<at::Tensor> grads{loss.detach()};
    for (const auto& p : net->parameters()) grads.push_back(p.grad().clone());
    return grads;
  };
  // Plain float32 convolutions and matrix products: under TF32 (LibTorch's default for cuDNN) the
  // gradients that are zero in exact arithmetic carry noise of 1e-5 of the largest (seen on an
  // H100), which would hide nothing but fail the bound below.
  at::Context& ctx = at::globalContext();
  const bool tf32_cudnn = ctx.allowTF32CuDNN(), tf32_cublas = ctx.allowTF32CuBLAS();
  ctx.setAllowTF32CuDNN(false);
  ctx.setAllowTF32CuBLAS(false);
  const auto composite = step(nullptr), fused = step(&cuda::bn_gelu_kernels());
  ctx.setAllowTF32CuDNN(tf32_cudnn);
  ctx.setAllowTF32CuBLAS(tf32_cublas);
  EXPECT_LE(max_rel_diff(fused[0], composite[0]), 1e-5) << "loss";
  // As BnGelu.CoAtNetTrainsAlikeWithTheFusedOperation: gradients that are zero in exact
  // arithmetic (a pre-norm's bias) are measured against the model's largest gradient.
  double largest = 0;
  for (size_t i = 1; i < composite.size(); ++i)
    largest = std::max(largest, composite[i].abs().max().item<double>());
  for (size_t i = 1; i < fused.size(); ++i) {
    const double diff = (fused[i] - composite[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-3 * composite[i].abs().max().item<double>() + 1e-5 * largest)
        << "gradient " << i;
  }
}
